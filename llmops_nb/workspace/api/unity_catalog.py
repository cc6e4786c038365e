"""Unity Catalog namespaces the serving API depends on: catalogs, schemas, grants, models.

Enough of the UC REST API for a client to ask, before a deploy, whether the names in its
config exist and whether it may write there (``llmops-nb preflight``), and to create them
through the same API (tests seed the fake this way). Shapes follow databricks-sdk
``service/catalog.py`` (``CatalogInfo``, ``SchemaInfo``, ``PermissionsList``,
``EffectivePermissionsList``, ``RegisteredModelInfo``, ``ModelVersionInfo``) and the
Databricks CLI's test server (databricks/cli libs/testserver/catalogs.go, schemas.go,
registered_models.go: the creator owns what it creates; "Schema 'a.b' does not exist.").

- catalogs: ``POST /api/2.1/unity-catalog/catalogs``, ``GET|PATCH .../catalogs/{name}``
- schemas: ``POST /api/2.1/unity-catalog/schemas``, ``GET|PATCH .../schemas/{full_name}``
- grants: ``GET|PATCH .../permissions/{type}/{full_name}``; ``GET
  .../effective-permissions/{type}/{full_name}`` adds what a schema inherits from its catalog
- models: ``POST .../models``, ``GET .../models/{full_name}``, ``GET .../versions``,
  ``GET .../versions/{version}``, ``PUT|GET .../aliases/{alias}``; versions are created as
  MLflow's databricks-uc registry does: ``POST /api/2.0/mlflow/unity-catalog/model-versions/
  create`` (PENDING_REGISTRATION), then ``.../finalize`` (READY).
- provisioned throughput: ``GET /api/2.0/serving-endpoints/get-model-optimization-info/{full_name}/
  {version}`` answers ``{optimizable, model_type, throughput_chunk_size, dbus}`` for a version the
  fake knows (see :func:`optimization_info`).

State lives in ``<home>/state/unity_catalog.json``. The local workspace serves the same
routes, but its MLflow registry is a SQLite file, not Unity Catalog: nothing it registers
appears here (preflight says so rather than asking).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from fastapi import FastAPI, Request

from llmops_nb.workspace.api.identity import USER_NAME
from llmops_nb.workspace.api.requestbody import json_object as _body
from llmops_nb.workspace.apierror import ApiError, invalid
from llmops_nb.workspace.store import atomic_write_json

UC = "/api/2.1/unity-catalog"
METASTORE_ID = "11111111-2222-3333-4444-555555555555"
PRIVILEGES = frozenset(
    {
        "ALL_PRIVILEGES",
        "BROWSE",
        "MANAGE",
        "USE_CATALOG",
        "USE_SCHEMA",
        "CREATE_SCHEMA",
        "CREATE_TABLE",
        "CREATE_MODEL",
        "CREATE_FUNCTION",
        "CREATE_VOLUME",
        "CREATE_MATERIALIZED_VIEW",
        "SELECT",
        "MODIFY",
        "EXECUTE",
        "APPLY_TAG",
        "READ_VOLUME",
        "WRITE_VOLUME",
        "REFRESH",
    }
)
SECURABLES = ("catalog", "schema", "function", "table", "volume")


def _now() -> int:
    return int(time.time() * 1000)


def _missing(kind: str, name: str) -> ApiError:
    code = {"Catalog": "CATALOG_DOES_NOT_EXIST", "Schema": "SCHEMA_DOES_NOT_EXIST"}.get(kind, "RESOURCE_DOES_NOT_EXIST")
    return ApiError(404, code, f"{kind} '{name}' does not exist.")


class CatalogState:
    """Catalogs, schemas, grants, registered models, versions and aliases of one workspace."""

    KINDS = ("catalogs", "schemas", "grants", "models", "versions", "aliases")

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "state" / "unity_catalog.json"
        data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        self.catalogs: dict[str, dict] = data.get("catalogs", {})
        self.schemas: dict[str, dict] = data.get("schemas", {})
        self.grants: dict[str, dict[str, list[str]]] = data.get("grants", {})  # "schema:a.b" -> principal -> privileges
        self.models: dict[str, dict] = data.get("models", {})
        self.versions: dict[str, list[dict]] = data.get("versions", {})
        self.aliases: dict[str, dict[str, int]] = data.get("aliases", {})

    def save(self) -> None:
        atomic_write_json(self.path, {k: getattr(self, k) for k in self.KINDS})

    def catalog(self, name: str) -> dict:
        if name not in self.catalogs:
            raise _missing("Catalog", name)
        return self.catalogs[name]

    def schema(self, full_name: str) -> dict:
        if full_name not in self.schemas:
            raise _missing("Schema", full_name)
        return self.schemas[full_name]

    def model(self, full_name: str) -> dict:
        if full_name not in self.models:
            raise _missing("Registered model", full_name)
        return self.models[full_name]

    def version(self, full_name: str, version: int | str) -> dict:
        self.model(full_name)
        for info in self.versions.get(full_name, []):
            if str(info["version"]) == str(version):
                return info
        raise _missing("Model version", f"{full_name}/{version}")

    def securable(self, kind: str, full_name: str) -> str:
        """The grants key of an existing securable (404 if it does not exist)."""
        kind = kind.lower()
        if kind not in SECURABLES:
            raise invalid(f"securable_type: {kind!r} is not allowed; one of {', '.join(SECURABLES)}")
        {"catalog": self.catalog, "schema": self.schema}.get(kind, lambda n: None)(full_name)
        return f"{kind}:{full_name}"

    def assignments(self, key: str) -> list[dict]:
        return [{"principal": p, "privileges": sorted(privs)} for p, privs in sorted(self.grants.get(key, {}).items()) if privs]

    def effective(self, kind: str, full_name: str, principal: str | None) -> list[dict]:
        """Direct grants, plus (for a schema) those inherited from its catalog."""
        found: dict[str, list[dict]] = {}
        sources: list[tuple[str, str | None, str | None]] = [(self.securable(kind, full_name), None, None)]
        if kind.lower() == "schema":
            catalog = full_name.split(".")[0]
            sources.append((f"catalog:{catalog}", "CATALOG", catalog))
        for key, from_type, from_name in sources:
            for who, privs in self.grants.get(key, {}).items():
                for privilege in privs:
                    item: dict[str, str | None] = {"privilege": privilege}
                    if from_type:
                        item.update(inherited_from_type=from_type, inherited_from_name=from_name)
                    found.setdefault(who, []).append(item)
        return [{"principal": p, "privileges": privs} for p, privs in sorted(found.items()) if principal in (None, "", p)]


#: Which UC models the fake calls optimizable for provisioned throughput, by a family word in the
#: model's own name (its last part): (word, model_type, throughput_chunk_size, dbus). Databricks
#: decides by the logged model's architecture; these chunk sizes and DBUs are the fake's own,
#: deterministic numbers, not Databricks' price list. Any other model answers ``optimizable: false``
#: with no chunk size, as Databricks does for a model it cannot optimize (mosaicml/llm-foundry reads
#: ``throughput_chunk_size`` as absent then; docs.databricks.com machine-learning/foundation-models/
#: deploy-prov-throughput-foundation-model-apis checks ``optimizable`` first).
PT_FAMILIES: tuple[tuple[str, str, int, int], ...] = (
    ("llama", "llama", 950, 28),
    ("mixtral", "mixtral", 2000, 56),
    ("mistral", "mistral", 1000, 28),
    ("dbrx", "dbrx", 1800, 56),
    ("qwen", "qwen", 900, 28),
    ("gemma", "gemma", 800, 28),
    ("gte", "bert", 2000, 14),
    ("bge", "bert", 2000, 14),
)


def optimization_info(full_name: str) -> dict:
    """What ``get-model-optimization-info`` answers for the model ``full_name`` (see PT_FAMILIES)."""
    own = full_name.rsplit(".", 1)[-1].lower()
    for word, model_type, chunk, dbus in PT_FAMILIES:
        if word in own:
            return {"optimizable": True, "model_type": model_type, "throughput_chunk_size": chunk, "dbus": dbus}
    return {"optimizable": False}


def _audit(info: dict) -> dict:
    now = _now()
    return {
        **info,
        "created_at": now,
        "created_by": USER_NAME,
        "updated_at": now,
        "updated_by": USER_NAME,
        "owner": USER_NAME,
        "metastore_id": METASTORE_ID,
    }


def _text(body: dict, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or any(c in value for c in " ./"):
        raise invalid(f"{field}: {value!r} is not allowed; a name without spaces, periods or slashes")
    return value


def _update(info: dict, body: dict, fields: tuple[str, ...]) -> dict:
    for field in fields:
        if isinstance(body.get(field), str):
            info[field] = body[field]
    info.update(updated_at=_now(), updated_by=USER_NAME)
    return info


def routes(app: FastAPI, ctx: object) -> None:  # noqa: C901 - one route table
    """Register the Unity Catalog routes over ``ctx.home``."""
    uc = CatalogState(ctx.home)  # type: ignore[attr-defined]

    # ---- catalogs and schemas ----------------------------------------------------------
    @app.post(UC + "/catalogs")
    async def create_catalog(request: Request):
        body = await _body(request)
        name = _text(body, "name")
        if name in uc.catalogs:
            raise ApiError(409, "CATALOG_ALREADY_EXISTS", f"Catalog '{name}' already exists.")
        uc.catalogs[name] = _audit(
            {"name": name, "full_name": name, "catalog_type": "MANAGED_CATALOG", "comment": body.get("comment")}
        )
        uc.save()
        return uc.catalogs[name]

    @app.get(UC + "/catalogs/{name}")
    async def get_catalog(name: str):
        return uc.catalog(name)

    @app.patch(UC + "/catalogs/{name}")
    async def update_catalog(name: str, request: Request):
        info = _update(uc.catalog(name), await _body(request), ("owner", "comment"))
        uc.save()
        return info

    @app.post(UC + "/schemas")
    async def create_schema(request: Request):
        body = await _body(request)
        catalog, name = _text(body, "catalog_name"), _text(body, "name").lower()
        uc.catalog(catalog)
        full_name = f"{catalog}.{name}"
        if full_name in uc.schemas:
            raise ApiError(409, "SCHEMA_ALREADY_EXISTS", f"Schema '{full_name}' already exists.")
        uc.schemas[full_name] = _audit(
            {
                "name": name,
                "catalog_name": catalog,
                "full_name": full_name,
                "catalog_type": "MANAGED_CATALOG",
                "comment": body.get("comment"),
            }
        )
        uc.save()
        return uc.schemas[full_name]

    @app.get(UC + "/schemas/{full_name}")
    async def get_schema(full_name: str):
        return uc.schema(full_name)

    @app.patch(UC + "/schemas/{full_name}")
    async def update_schema(full_name: str, request: Request):
        info = _update(uc.schema(full_name), await _body(request), ("owner", "comment"))
        uc.save()
        return info

    # ---- grants ------------------------------------------------------------------------
    @app.get(UC + "/permissions/{securable_type}/{full_name}")
    async def get_permissions(securable_type: str, full_name: str, principal: str = ""):
        key = uc.securable(securable_type, full_name)
        return {"privilege_assignments": [a for a in uc.assignments(key) if principal in ("", a["principal"])]}

    @app.patch(UC + "/permissions/{securable_type}/{full_name}")
    async def update_permissions(securable_type: str, full_name: str, request: Request):
        key = uc.securable(securable_type, full_name)
        changes = (await _body(request)).get("changes") or []
        for i, change in enumerate(changes):
            if not isinstance(change, dict) or not isinstance(change.get("principal"), str):
                raise invalid(f"changes[{i}].principal: required, a user, group or service principal name")
            for field in ("add", "remove"):
                bad = [p for p in change.get(field) or [] if p not in PRIVILEGES]
                if bad:
                    raise invalid(f"changes[{i}].{field}: {bad[0]!r} is not allowed; one of {', '.join(sorted(PRIVILEGES))}")
        for change in changes:
            held = set(uc.grants.setdefault(key, {}).get(change["principal"], []))
            held = (held | set(change.get("add") or [])) - set(change.get("remove") or [])
            uc.grants[key][change["principal"]] = sorted(held)
        uc.save()
        return {"privilege_assignments": uc.assignments(key)}

    @app.get(UC + "/effective-permissions/{securable_type}/{full_name}")
    async def effective_permissions(securable_type: str, full_name: str, principal: str = ""):
        return {"privilege_assignments": uc.effective(securable_type, full_name, principal or None)}

    # ---- registered models, versions, aliases ------------------------------------------
    @app.post(UC + "/models")
    async def create_model(request: Request):
        body = await _body(request)
        catalog, schema, name = (_text(body, f) for f in ("catalog_name", "schema_name", "name"))
        uc.schema(f"{catalog}.{schema}")
        full_name = f"{catalog}.{schema}.{name}"
        if full_name in uc.models:
            raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"Registered model '{full_name}' already exists.")
        uc.models[full_name] = _audit(
            {"name": name, "catalog_name": catalog, "schema_name": schema, "full_name": full_name, "comment": body.get("comment")}
        )
        uc.save()
        return uc.models[full_name]

    @app.get(UC + "/models/{full_name}")
    async def get_model(full_name: str, include_aliases: bool = False):
        info = dict(uc.model(full_name))
        if include_aliases:
            info["aliases"] = [{"alias_name": a, "version_num": v} for a, v in sorted(uc.aliases.get(full_name, {}).items())]
        return info

    @app.get(UC + "/models/{full_name}/versions")
    async def list_versions(full_name: str):
        uc.model(full_name)
        # Creation order, oldest first: "There is no guarantee of a specific ordering of the elements
        # in the response" (databricks-sdk-py service/catalog.py, ModelVersionsAPI.list), so a client
        # that takes the first item as the latest is caught here.
        return {"model_versions": list(uc.versions.get(full_name, []))}

    @app.get(UC + "/models/{full_name}/versions/{version}")
    async def get_version(full_name: str, version: str):
        return uc.version(full_name, version)

    @app.put(UC + "/models/{full_name}/aliases/{alias}")
    async def set_alias(full_name: str, alias: str, request: Request):
        number = (await _body(request)).get("version_num")
        if number is None:
            raise invalid("version_num: required; the version number the alias points to")
        uc.version(full_name, str(number))
        uc.aliases.setdefault(full_name, {})[alias] = int(number)
        uc.save()
        return {"alias_name": alias, "version_num": int(number)}

    @app.get(UC + "/models/{full_name}/aliases/{alias}")
    async def get_by_alias(full_name: str, alias: str):
        uc.model(full_name)
        if alias not in uc.aliases.get(full_name, {}):
            raise _missing("Alias", f"{full_name}@{alias}")
        return uc.version(full_name, uc.aliases[full_name][alias])

    # ---- MLflow's databricks-uc registry: how versions come to exist -------------------
    @app.post("/api/2.0/mlflow/unity-catalog/model-versions/create")
    async def create_version(request: Request):
        body = await _body(request)
        full_name = str(body.get("name"))
        model = uc.model(full_name)
        if not isinstance(body.get("source"), str):
            raise invalid("source: required, the artifact location of the logged model")
        number = 1 + max((int(v["version"]) for v in uc.versions.get(full_name, [])), default=0)
        info = _audit(
            {
                "model_name": model["name"],
                "catalog_name": model["catalog_name"],
                "schema_name": model["schema_name"],
                "version": number,
                "source": body["source"],
                "run_id": body.get("run_id"),
                "status": "PENDING_REGISTRATION",
                "storage_location": f"dbfs:/uc/{full_name.replace('.', '/')}/{number}",
            }
        )
        uc.versions.setdefault(full_name, []).append(info)
        uc.save()
        return {"model_version": {**info, "name": full_name, "version": str(number)}}

    @app.post("/api/2.0/mlflow/unity-catalog/model-versions/finalize")
    async def finalize_version(request: Request):
        body = await _body(request)
        info = uc.version(str(body.get("name")), str(body.get("version")))
        info.update(status="READY", updated_at=_now())
        uc.save()
        return {"model_version": {**info, "name": body.get("name"), "version": str(info["version"])}}

    # ---- provisioned throughput: what a model version may be served with --------------
    @app.get("/api/2.0/serving-endpoints/get-model-optimization-info/{full_name}/{version}")
    async def get_optimization_info(full_name: str, version: str):
        uc.version(full_name, version)  # 404 for a model or version Unity Catalog does not have
        return optimization_info(full_name)
