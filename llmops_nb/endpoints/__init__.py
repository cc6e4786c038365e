"""Create-or-update, wait for READY, get, list and delete serving endpoints.

One path over databricks-sdk for every workspace (the local one and Databricks), planned and
applied as the Databricks CLI's direct deploy does:

- :mod:`~llmops_nb.endpoints.normalize`: desired config and GET view in one comparable shape;
- :mod:`~llmops_nb.endpoints.plan`: which writes, in the CLI's order (tags, ai_gateway,
  config), removals included, immutable changes refused;
- :mod:`~llmops_nb.endpoints.apply`: :func:`deploy` makes them and waits;
- :mod:`~llmops_nb.endpoints.reads` and :mod:`~llmops_nb.endpoints.waits`;
- :mod:`~llmops_nb.endpoints.events`: what a deploy reports to a progress callback.
"""

from llmops_nb.endpoints.apply import DeployResult, deploy
from llmops_nb.endpoints.events import DeployEvent
from llmops_nb.endpoints.plan import (
    AI_GATEWAY,
    CONFIG,
    CREATE,
    DELETE,
    DISABLE_INFERENCE_TABLE,
    TAGS,
    ImmutableChange,
    Plan,
    config_matches,
    make_plan,
    plan_changes,
    tag_changes,
)
from llmops_nb.endpoints.reads import delete_endpoint, endpoint_url, get_endpoint, list_endpoints, state_of
from llmops_nb.endpoints.waits import FAILED_UPDATES, wait_not_updating, wait_ready

__all__ = [
    "AI_GATEWAY", "CONFIG", "CREATE", "DELETE", "DISABLE_INFERENCE_TABLE", "FAILED_UPDATES", "TAGS",
    "DeployEvent", "DeployResult", "ImmutableChange", "Plan", "config_matches", "delete_endpoint", "deploy", "endpoint_url",
    "get_endpoint", "list_endpoints", "make_plan", "plan_changes", "state_of", "tag_changes", "wait_not_updating",
    "wait_ready",
]
