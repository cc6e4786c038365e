"""ipywidgets for notebooks: the endpoint form (00_configure_endpoint) and the chat playground (03_serve).

Only notebooks import this subpackage; ``import llmops_nb`` never loads ipywidgets.
"""

from __future__ import annotations

from llmops_nb.widgets.form import EndpointForm, endpoint_form
from llmops_nb.widgets.playground import ChatPlayground, chat_playground

__all__ = ["ChatPlayground", "EndpointForm", "chat_playground", "endpoint_form"]
