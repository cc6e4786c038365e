"""Our config models take every field and enum value of the installed databricks-sdk's serving requests.

The walk starts at the requests we make (create, update config, PUT ai-gateway, PATCH tags, the
notifications update): the request dataclass where the SDK has one (CreateServingEndpoint,
PutAiGatewayRequest, PatchServingEndpointTags in older SDKs), else the API method's keyword
parameters (newer SDKs inline them). It follows every nested dataclass with
`dataclasses.fields()` and `typing.get_type_hints()`, maps each SDK class to our model (same name,
or MODEL_FOR below) and fails naming `Class.field` for a field we lack, an Enum value we lack, a
field the SDK requires that we leave optional, a list we do not take as a list, or a field of ours
the SDK would not send. An SDK upgrade that adds a field fails here until the schema follows.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from typing import Any, Literal, Union

import pytest
from pydantic import BaseModel

from llmops_nb.config import endpoint as _endpoint
from llmops_nb.config import gateway as _gateway
from llmops_nb.config import providers as _providers
from llmops_nb.config import served_entities as _entities

#: our config models by class name, looked up by the SDK's class name
ours = types.SimpleNamespace(
    **{k: v for m in (_endpoint, _gateway, _providers, _entities) for k, v in vars(m).items() if isinstance(v, type)}
)
from llmops_nb.errors import ConfigError  # noqa: E402

serving = pytest.importorskip("databricks.sdk.service.serving")

# The requests we make: (request dataclass in older SDKs, API method in newer ones).
ROOTS = [
    ("CreateServingEndpoint", "create"),
    ("EndpointCoreConfigInput", "update_config"),
    ("PutAiGatewayRequest", "put_ai_gateway"),
    ("PatchServingEndpointTags", "patch"),
    ("UpdateInferenceEndpointNotifications", "update_notifications"),
]
# Path parameters and waiter options of the API methods: not part of a body.
METHOD_ONLY = {"self", "return", "timeout"}

# SDK class (or request) -> our model, where the names differ.
MODEL_FOR: dict[str, type[BaseModel]] = {
    "create": _endpoint.EndpointConfig,
    "CreateServingEndpoint": _endpoint.EndpointConfig,
    "update_config": _endpoint.EndpointConfig,
    "EndpointCoreConfigInput": _endpoint.EndpointConfig,  # `config` is flattened into EndpointConfig
    "put_ai_gateway": _gateway.AiGatewayConfig,
    "PutAiGatewayRequest": _gateway.AiGatewayConfig,
    "update_notifications": _endpoint.EndpointConfig,
    "patch": _endpoint.EndpointConfig,  # PATCH .../tags: see DERIVED
    "PatchServingEndpointTags": _endpoint.EndpointConfig,
    "UpdateInferenceEndpointNotifications": _endpoint.EndpointConfig,
    "ServedEntityInput": _entities.ServedEntity,
    "RateLimit": _gateway.LegacyRateLimit,  # our RateLimit is the AI gateway's (historical name)
}

# Fields that are ours in another shape, each with the reason (not omissions: the data is taken).
DERIVED: dict[tuple[str, str], str] = {
    # the endpoint's `config` object: its fields are EndpointConfig's own (checked as EndpointCoreConfigInput)
    ("create", "config"): "flattened",
    ("CreateServingEndpoint", "config"): "flattened",
    # PATCH .../tags: the plan computes add_tags/delete_tags from EndpointConfig.tags (a {key: value} map)
    ("patch", "add_tags"): "EndpointConfig.tags",
    ("patch", "delete_tags"): "EndpointConfig.tags",
    ("PatchServingEndpointTags", "add_tags"): "EndpointConfig.tags",
    ("PatchServingEndpointTags", "delete_tags"): "EndpointConfig.tags",
}

# Deliberately left out, with the reason. Keep this short.
# - `*_plaintext`: a secret pasted into a config would end up in files, notebooks and logs; DESIGN.md
#   "Secrets are never parameters". Each is refused by name with one line (checked below).
LEFT_OUT = [(re.compile(r".*_plaintext$"), "plaintext secrets are refused (DESIGN.md: secrets are never parameters)")]

# Fields of ours that are no SDK request field, with the reason.
OURS_ONLY: dict[tuple[str, str], str] = {}


def _strip(tp: Any) -> tuple[Any, bool]:
    """(inner type, is_list) of Optional[X] / List[X] / Dict[str, X]."""
    is_list = False
    while True:
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp, is_list
            tp = args[0]
        elif origin in (list, typing.List):  # noqa: UP006
            is_list, tp = True, typing.get_args(tp)[0]
        elif origin in (dict, typing.Dict):  # noqa: UP006
            tp = typing.get_args(tp)[-1]
        else:
            return tp, is_list


def _literal_values(tp: Any) -> set[Any]:
    tp, _ = _strip(tp)
    if typing.get_origin(tp) is Literal:
        return set(typing.get_args(tp))
    return set()


def _our_model(sdk_name: str) -> type[BaseModel] | None:
    model = MODEL_FOR.get(sdk_name) or getattr(ours, sdk_name, None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _left_out(field: str) -> str | None:
    return next((why for rule, why in LEFT_OUT if rule.match(field)), None)


def _sdk_fields(root: str, method: str) -> tuple[str, list[tuple[str, Any, bool]]]:
    """(name, [(field, type, required)]) of a request: its dataclass, else the method's parameters."""
    cls = getattr(serving, root, None)
    if cls is not None and dataclasses.is_dataclass(cls):
        return root, _dataclass_fields(cls)
    fn = getattr(serving.ServingEndpointsAPI, method, None)
    if fn is None:
        return method, []
    hints = typing.get_type_hints(fn)
    params = inspect.signature(fn).parameters
    out = []
    for name, param in params.items():
        if name in METHOD_ONLY or name not in hints:
            continue
        if method != "create" and name == "name":
            continue  # the endpoint named in the path
        out.append((name, hints[name], param.default is inspect.Parameter.empty))
    return method, out


def _dataclass_fields(cls: type) -> list[tuple[str, Any, bool]]:
    hints = typing.get_type_hints(cls)
    return [
        (f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    ]


class Walk:
    """The recursive comparison; `checked` counts SDK fields and enum values compared."""

    def __init__(self) -> None:
        self.checked = 0
        self.problems: list[str] = []
        self.seen: set[str] = set()
        self.checked_names: list[str] = []

    def request(self, root: str, method: str) -> None:
        name, fields = _sdk_fields(root, method)
        self.compare(name, fields)

    def dataclass(self, cls: type) -> None:
        if cls.__name__ not in self.seen:
            self.compare(cls.__name__, _dataclass_fields(cls))

    def compare(self, sdk_name: str, fields: list[tuple[str, Any, bool]]) -> None:
        self.seen.add(sdk_name)
        model = _our_model(sdk_name)
        if model is None:
            self.problems.append(f"{sdk_name}: no model of ours (add one, or map it in MODEL_FOR)")
            return
        for field, tp, required in fields:
            self.checked += 1
            self.checked_names.append(f"{sdk_name}.{field}")
            inner, sdk_list = _strip(tp)
            if (sdk_name, field) in DERIVED:
                if dataclasses.is_dataclass(inner):
                    self.dataclass(inner)
                continue
            if _left_out(field):
                continue
            ours_field = model.model_fields.get(field)
            where = f"{sdk_name}.{field} (ours: {model.__name__})"
            if ours_field is None:
                self.problems.append(f"{where}: field missing")
                continue
            if required and not ours_field.is_required():
                self.problems.append(f"{where}: required in the SDK, optional in ours")
            _our_inner, our_list = _strip(ours_field.annotation)
            if sdk_list and not our_list and (sdk_name, field) not in {("create", "tags"), ("CreateServingEndpoint", "tags")}:
                self.problems.append(f"{where}: a list in the SDK, not in ours")
            if isinstance(inner, type) and issubclass(inner, enum.Enum):
                allowed = _literal_values(ours_field.annotation)
                for member in inner:
                    self.checked += 1
                    if member.value not in allowed:
                        self.problems.append(f"{where}: enum value {member.value!r} of {inner.__name__} missing")
            elif dataclasses.is_dataclass(inner):
                self.dataclass(inner)
        known = {f for f, _, _ in fields}
        if sdk_name in ("create", "CreateServingEndpoint"):
            return  # EndpointConfig is also EndpointCoreConfigInput: its reverse check is there
        if model is _endpoint.EndpointConfig:
            known |= {f for f, _, _ in _sdk_fields("CreateServingEndpoint", "create")[1]}
            known |= {f for f, _, _ in _dataclass_fields(serving.EndpointCoreConfigInput)}
        for name in model.model_fields:
            if name not in known and (model.__name__, name) not in OURS_ONLY:
                self.problems.append(f"{model.__name__}.{name}: not a field of the SDK's {sdk_name} (the SDK would not send it)")


@pytest.fixture(scope="module")
def walk() -> Walk:
    w = Walk()
    for root, method in ROOTS:
        w.request(root, method)
    return w


def test_our_models_take_every_sdk_field_and_enum_value(walk: Walk, record_property: Any) -> None:
    record_property("sdk_fields_checked", walk.checked)
    print(f"\nSDK walk: {walk.checked} fields and enum values checked over {len(walk.seen)} classes/requests")
    assert walk.checked > 150, walk.checked  # the walk really ran (databricks-sdk 0.162: 206)
    assert walk.problems == [], "\n".join(walk.problems)


def test_every_sdk_class_we_reach_has_a_model(walk: Walk) -> None:
    for name in (
        "ServedEntityInput",
        "ExternalModel",
        "AmazonBedrockConfig",
        "AiGatewayRateLimit",
        "AiGatewayGuardrailParameters",
        "TrafficConfig",
        "Route",
        "EndpointTag",
    ):
        assert name in walk.seen


def test_plaintext_fields_left_out_are_refused_by_name(walk: Walk) -> None:
    """The allow-listed fields are not silently dropped: each is refused in one line naming it."""
    left = [n for n in walk.checked_names if _left_out(n.split(".")[-1])]
    assert len(left) >= 10, left
    for qualified in left:
        cls_name, field = qualified.split(".")
        model = _our_model(cls_name)
        assert model is not None, qualified
        with pytest.raises(ConfigError) as info:
            model.model_validate({field: "sk-" + "x" * 30})
        assert info.value.field == field and "plaintext secrets are refused" in str(info.value)
        assert "x" * 30 not in str(info.value)


def test_the_walk_fails_on_a_field_or_enum_value_we_lack() -> None:
    """The comparison itself can fail: an SDK Route with an extra field, a key enum with an extra value."""

    class Key(enum.Enum):
        ENDPOINT = "endpoint"
        IP = "ip"

    @dataclasses.dataclass
    class Route:
        traffic_percentage: int
        served_entity_name: str | None = None
        served_model_name: str | None = None
        weight: int | None = None

    @dataclasses.dataclass
    class AiGatewayRateLimit:
        renewal_period: str
        key: Key | None = None

    w = Walk()
    w.compare(
        "Route", [(f.name, typing.get_type_hints(Route, localns={"Key": Key})[f.name], False) for f in dataclasses.fields(Route)]
    )
    w.compare(
        "AiGatewayRateLimit",
        [
            (f.name, typing.get_type_hints(AiGatewayRateLimit, localns={"Key": Key})[f.name], f.name == "renewal_period")
            for f in dataclasses.fields(AiGatewayRateLimit)
        ],
    )
    assert "Route.weight (ours: Route): field missing" in w.problems
    assert "AiGatewayRateLimit.key (ours: AiGatewayRateLimit): enum value 'ip' of Key missing" in w.problems
    assert any(p.startswith("AiGatewayRateLimit.calls: not a field") for p in w.problems)
