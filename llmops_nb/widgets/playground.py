"""A chat playground for one endpoint: prompt box, max tokens and temperature sliders, Send and Stop.

The conversation is sent whole each turn (OpenAI-style messages); every answer is shown with
its latency, its token usage and the served entity that answered. An answer is fetched in a
background thread, so the page stays live while it is pending: it streams in as it is
generated when the client can stream (``llmops_nb.chat.client.chat_stream``), else it comes whole
(``llmops_nb.chat.client.chat``). **Stop** ends the wait at once: a stream is closed, a late whole
answer is dropped, and the turn leaves the conversation as it was.

Two optional text areas shape the answer as ``llmops-nb query --json-schema/--tool`` does
(llmops_nb/cli/lifecycle.py, _output_files): a JSON schema (sent as ``response_format``
json_schema, named "answer") and a tool (a function definition or an OpenAI tool, sent in
``tools`` with ``tool_choice`` naming it). Bad JSON is one line in the status and nothing is sent;
a turn with a tool is asked whole (a tool call is shown whole), and its calls are shown as
``name(arguments)``.
"""

from __future__ import annotations

import html
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from llmops_nb.chat.client import chat_stream as _chat_stream
from llmops_nb.errors import ConfigError, LlmopsError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.chat.client import ChatResult

ERROR_STYLE = "color:#b00020"
RENDER_EVERY = 0.1  # seconds between transcript updates while an answer streams
STOPPED = "stopped"


@dataclass
class _Turn:
    """One request in flight: the messages sent, the text streamed so far, how it ended."""

    messages: list[dict[str, str]]
    shaping: dict[str, Any] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)
    partial: str = ""
    stream: Any = None
    result: ChatResult | None = None
    error: str | None = None
    thread: threading.Thread | None = None


def one_line(exc: BaseException) -> str:
    """The message a user sees for ``exc``: one line, no traceback."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if isinstance(exc, LlmopsError) else f"{type(exc).__name__}: {line}"


class ChatPlayground(w.VBox):
    """The playground widget; ``messages`` is the conversation, ``results`` the answers' stats.

    ``stream``: stream answers (None: yes).
    """

    def __init__(
        self,
        client: WorkspaceClient,
        endpoint_name: str,
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        system: str | None = None,
        stream: bool | None = None,
    ) -> None:
        self.client, self.endpoint_name, self.system = client, endpoint_name, system
        self.stream = True if stream is None else bool(stream)
        self.messages: list[dict[str, str]] = []
        self.results: list[ChatResult] = []
        self._turn: _Turn | None = None
        self._lock = threading.Lock()
        self.prompt = w.Textarea(placeholder="Ask something...", layout=w.Layout(width="100%", max_width="600px", height="70px"))
        label = {"style": {"description_width": "90px"}, "layout": w.Layout(width="340px")}
        self.max_tokens = w.IntSlider(value=max_tokens, min=1, max=1024, description="max tokens", **label)
        self.temperature = w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.1, description="temperature", **label)
        area = w.Layout(width="100%", max_width="296px", height="70px")
        self.json_schema = w.Textarea(placeholder="JSON schema of the answer (optional)", layout=area)
        self.tool = w.Textarea(placeholder='a tool: {"name": ..., "parameters": {...}} (optional)', layout=area)
        self.send_button = w.Button(description="Send", icon="paper-plane", button_style="primary")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="warning", layout=w.Layout(display="none"))
        self.clear_button = w.Button(description="Clear", icon="trash")
        self.transcript = w.HTML("", layout=w.Layout(max_width="760px"))
        self.status = w.HTML("")
        self.send_button.on_click(lambda _: self.send(wait=False))
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear())
        for widget, name in (
            (self.prompt, "prompt"),
            (self.json_schema, "json-schema"),
            (self.tool, "tool"),
            (self.send_button, "send"),
            (self.stop_button, "stop"),
            (self.clear_button, "clear"),
            (self.transcript, "transcript"),
            (self.status, "chat-status"),
        ):
            widget.add_class(f"llmops-{name}")
        super().__init__(
            [
                w.HTML(f"<b>Chat with {html.escape(endpoint_name)}</b>"),
                self.transcript,
                self.prompt,
                w.HBox([self.max_tokens, self.temperature], layout=w.Layout(flex_flow="row wrap")),
                w.HBox([self.json_schema, self.tool], layout=w.Layout(flex_flow="row wrap")),
                w.HBox([self.send_button, self.stop_button, self.clear_button]),
                self.status,
            ]
        )
        self.add_class("llmops-playground")

    # ------------------------------------------------------------------ actions

    @property
    def pending(self) -> bool:
        """True while an answer is awaited (or streaming)."""
        return self._turn is not None

    def send(self, prompt: str | None = None, *, wait: bool = True) -> ChatResult | None:
        """Send the prompt box (or ``prompt``) with the conversation so far; show the answer.

        ``wait=False`` (the Send button) returns at once; the answer shows when it comes.
        Returns the answer, or None (no prompt, an error shown in the status line, stopped).
        """
        text = (prompt if prompt is not None else self.prompt.value).strip()
        if self._turn is not None:
            return None  # one answer at a time (Send is disabled meanwhile)
        if not text:
            self.status.value = "type a prompt first"
            return None
        try:
            shaping = self.shaping()
        except ConfigError as exc:
            self.status.value = f"<span style='{ERROR_STYLE}'>{html.escape(one_line(exc))}</span>"
            return None
        turn = _Turn([*self.messages, {"role": "user", "content": text}], shaping)
        with self._lock:
            self._turn = turn
        if prompt is None:
            self.prompt.value = ""
        self._busy(True, "waiting for the endpoint...")
        self._render()
        turn.thread = threading.Thread(target=self._run, args=(turn,), name="llmops-chat", daemon=True)
        turn.thread.start()
        return self.wait() if wait else None

    def wait(self, timeout: float | None = None) -> ChatResult | None:
        """Wait for the pending answer (if any); return it (None if it failed or was stopped)."""
        turn = self._turn
        if turn is None or turn.thread is None:
            return None
        turn.thread.join(timeout)
        return turn.result

    def stop(self) -> None:
        """Stop the pending answer: close its stream or drop its late answer; say "stopped"."""
        with self._lock:
            turn, self._turn = self._turn, None
        if turn is None:
            return
        turn.stopped.set()
        if turn.stream is not None:
            try:
                turn.stream.close()
            except Exception:  # noqa: BLE001 - closing a broken stream must not break the page
                pass
        self._restore_prompt(turn)
        self._busy(False, STOPPED)
        self._render()

    def clear(self) -> None:
        """Forget the conversation (a pending answer is stopped first)."""
        self.stop()
        self.messages, self.results = [], []
        self.status.value = ""
        self._render()

    # ------------------------------------------------------------------ the request

    def shaping(self) -> dict[str, Any]:
        """``response_format``, ``tools`` and ``tool_choice`` from the two text areas (empty: none).

        Raises ConfigError (one line naming the box) for text that is not a JSON object, a tool
        without a function name, or what the chat body's rules refuse (``output_fields``).
        """
        from llmops_nb.chat.client import output_fields

        out: dict[str, Any] = {}
        schema = _json_object("json schema", self.json_schema.value)
        if schema is not None:
            out["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        spec = _json_object("tool", self.tool.value)
        if spec is not None:
            tool: dict[str, Any] = spec if spec.get("type") == "function" else {"type": "function", "function": spec}
            name = (tool.get("function") or {}).get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError("tool", _short(self.tool.value), "a function with a name: {name, description, parameters}")
            out["tools"] = [tool]
            out["tool_choice"] = {"type": "function", "function": {"name": name}}
        return output_fields(**out)

    def _ask(self, turn: _Turn) -> ChatResult | None:
        from llmops_nb.chat import client

        generation = {"max_tokens": self.max_tokens.value, "temperature": round(self.temperature.value, 2), "system": self.system}
        if not self.stream or "tools" in turn.shaping:  # a tool call comes whole (as `query --tool` refuses --stream)
            return client.chat(self.client, self.endpoint_name, turn.messages, **generation, **turn.shaping)
        turn.stream = _chat_stream(self.client, self.endpoint_name, turn.messages, **generation, **turn.shaping)
        if turn.stopped.is_set():  # Stop came while the request was being opened
            turn.stream.close()
            return None
        shown = time.monotonic()
        for delta in turn.stream:
            if turn.stopped.is_set():
                return None
            if not turn.partial:
                self.status.value = "streaming..."
            turn.partial += delta
            if time.monotonic() - shown >= RENDER_EVERY:
                self._render()
                shown = time.monotonic()
        return turn.stream.result

    def _run(self, turn: _Turn) -> None:
        try:
            turn.result = self._ask(turn)
        except Exception as exc:  # noqa: BLE001 - shown in the page as one line, not raised into the kernel
            turn.error = one_line(exc)
        with self._lock:
            if turn.stopped.is_set() or self._turn is not turn:
                turn.result = None  # stopped: the late answer is dropped
                return
            self._turn = None
            if turn.result is not None:
                # a tool call is kept as its name(arguments) text: a plain assistant turn any endpoint takes back
                said = turn.result.content or "\n".join(tool_call_text(c) for c in turn.result.tool_calls or [])
                self.messages = [*turn.messages, {"role": "assistant", "content": said}]
                self.results.append(turn.result)
        if turn.result is None:
            self._restore_prompt(turn)
        message = turn.error or ("" if turn.result is not None else STOPPED)
        self._busy(False, f"<span style='{ERROR_STYLE}'>{html.escape(message)}</span>" if turn.error else message)
        self._render()

    # ------------------------------------------------------------------ display

    def _restore_prompt(self, turn: _Turn) -> None:
        if not self.prompt.value.strip():  # give the unanswered prompt back to edit or resend
            self.prompt.value = turn.messages[-1]["content"]

    def _busy(self, busy: bool, status: str) -> None:
        self.send_button.disabled = busy
        self.stop_button.layout.display = None if busy else "none"
        self.status.value = status

    def _render(self) -> None:
        with self._lock:
            turn, messages, results = self._turn, list(self.messages), list(self.results)
        rows: list[str] = []
        answers = iter(results)
        name = html.escape(self.endpoint_name)
        for message in messages:
            text = html.escape(message["content"]).replace("\n", "<br>")
            if message["role"] == "user":
                rows.append(f"<div class='llmops-user' style='margin:4px 0'><b>you:</b> {text}</div>")
                continue
            r = next(answers)
            if r.tool_calls:
                calls = "<br>".join(html.escape(tool_call_text(c)) for c in r.tool_calls)
                text = (f"{text}<br>" if r.content else "") + f"<code class='llmops-tool-call'>{calls}</code>"
            ttft = getattr(r, "ttft_ms", None)  # a streamed answer's time to its first token
            stats = (
                f"{r.latency_ms:.0f} ms"
                + (f" (first token {ttft:.0f} ms)" if ttft is not None else "")
                + f" · {r.prompt_tokens} prompt + {r.completion_tokens} completion tokens"
                + (f" · {html.escape(r.served_entity)}" if r.served_entity else "")
            )
            rows.append(
                f"<div class='llmops-answer' style='margin:4px 0 8px 0'><b>{name}:</b> {text}"
                f"<br><small class='llmops-stats' style='color:#666'>{stats}</small></div>"
            )
        if turn is not None:
            asked = html.escape(turn.messages[-1]["content"]).replace("\n", "<br>")
            partial = html.escape(turn.partial).replace("\n", "<br>")
            rows.append(
                f"<div class='llmops-user' style='margin:4px 0'><b>you:</b> {asked}</div>"
                f"<div class='llmops-pending' style='margin:4px 0 8px 0'><b>{name}:</b> {partial}"
                f"<span style='color:#666'> …</span></div>"
            )
        self.transcript.value = "".join(rows)


def tool_call_text(call: dict[str, Any]) -> str:
    """An OpenAI tool call as ``name(arguments)`` (what ``llmops-nb query --tool`` prints)."""
    fn = call.get("function") or {}
    return f"{fn.get('name')}({fn.get('arguments')})"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _json_object(box: str, text: str) -> dict[str, Any] | None:
    """The box's text as a JSON object, None when empty; ConfigError naming the box otherwise."""
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(box, _short(text), f"JSON text ({e})") from None
    if not isinstance(value, dict):
        raise ConfigError(box, _short(text), "a JSON object")
    return value


def chat_playground(client: WorkspaceClient, endpoint_name: str, **options: Any) -> ChatPlayground:
    """The playground for ``endpoint_name`` (what 03_serve displays when ``playground=True``)."""
    return ChatPlayground(client, endpoint_name, **options)
