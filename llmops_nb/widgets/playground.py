"""A chat playground for one endpoint: prompt box, max tokens and temperature sliders, Send.

The conversation is sent whole each turn (OpenAI-style messages); every answer is shown with
its latency, its token usage and the served entity that answered.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from llmops_nb.errors import LlmopsError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.client import ChatResult


class ChatPlayground(w.VBox):
    """The playground widget; ``messages`` is the conversation, ``results`` the answers' stats."""

    def __init__(self, client: WorkspaceClient, endpoint_name: str, *, max_tokens: int = 64,
                 temperature: float = 0.0, system: str | None = None) -> None:
        self.client, self.endpoint_name, self.system = client, endpoint_name, system
        self.messages: list[dict[str, str]] = []
        self.results: list[ChatResult] = []
        self.prompt = w.Textarea(placeholder="Ask something...", layout=w.Layout(width="600px", height="70px"))
        self.max_tokens = w.IntSlider(value=max_tokens, min=1, max=1024, description="max tokens")
        self.temperature = w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.1, description="temperature")
        self.send_button = w.Button(description="Send", icon="paper-plane", button_style="primary")
        self.clear_button = w.Button(description="Clear", icon="trash")
        self.transcript = w.HTML("")
        self.status = w.HTML("")
        self.send_button.on_click(lambda _: self.send())
        self.clear_button.on_click(lambda _: self.clear())
        super().__init__([w.HTML(f"<b>Chat with {html.escape(endpoint_name)}</b>"), self.transcript, self.prompt,
                          w.HBox([self.max_tokens, self.temperature]),
                          w.HBox([self.send_button, self.clear_button]), self.status])

    def send(self, prompt: str | None = None) -> ChatResult | None:
        """Send the prompt box (or ``prompt``) with the conversation so far; show the answer."""
        from llmops_nb.client import chat

        text = (prompt if prompt is not None else self.prompt.value).strip()
        if not text:
            self.status.value = "type a prompt first"
            return None
        turn = [*self.messages, {"role": "user", "content": text}]
        self.send_button.disabled, self.status.value = True, "waiting for the endpoint..."
        try:
            result = chat(self.client, self.endpoint_name, turn, max_tokens=self.max_tokens.value,
                          temperature=round(self.temperature.value, 2), system=self.system)
        except LlmopsError as exc:
            self.status.value = f"<span style='color:#b00020'>{html.escape(str(exc))}</span>"
            return None
        finally:
            self.send_button.disabled = False
        self.messages = [*turn, {"role": "assistant", "content": result.content}]
        self.results.append(result)
        self.prompt.value, self.status.value = "", ""
        self._render()
        return result

    def clear(self) -> None:
        self.messages, self.results = [], []
        self._render()

    def _render(self) -> None:
        rows: list[str] = []
        answers = iter(self.results)
        for message in self.messages:
            text = html.escape(message["content"]).replace("\n", "<br>")
            if message["role"] == "user":
                rows.append(f"<div style='margin:4px 0'><b>you:</b> {text}</div>")
                continue
            r = next(answers)
            stats = (f"{r.latency_ms:.0f} ms · {r.prompt_tokens} prompt + {r.completion_tokens} completion tokens"
                     + (f" · {html.escape(r.served_entity)}" if r.served_entity else ""))
            rows.append(f"<div style='margin:4px 0 8px 0'><b>{html.escape(self.endpoint_name)}:</b> {text}"
                        f"<br><small style='color:#666'>{stats}</small></div>")
        self.transcript.value = "".join(rows)


def chat_playground(client: WorkspaceClient, endpoint_name: str, **options: Any) -> ChatPlayground:
    """The playground for ``endpoint_name`` (what 03_serve displays when ``playground=True``)."""
    return ChatPlayground(client, endpoint_name, **options)
