"""The ``openai`` backend: a :class:`~assistant.model.ChatModel` served by any OpenAI-compatible server.

vLLM, TGI, the llama.cpp server, Ollama and ``ragtune serve`` all speak
``/v1/chat/completions``. The base model is asked for by ``served_model`` (default:
``model``); an adapter by its registered name, which is how vLLM serves LoRA
adapters started with ``--enable-lora --lora-modules NAME=PATH``.

Tool calls come back from the server as structured ``tool_calls``; this backend
hands them to the agent as ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``
text, the format the agent already reads, so the agent loop is the same for
every backend.

Tokens are counted with the base model's own tokenizer when it can be loaded
here (then the agent's context budget is exact); otherwise they are estimated
generously at one token per three characters.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assistant.config import AssistantConfig
from assistant.errors import AssistantError
from assistant.model import Message, Schema, chat_tokenizer
from assistant.toolcalls import arguments_object
from finetune.adapters import check_fits
from finetune.base_model import render_chat, resolve_model_path
from finetune.errors import FinetuneError

log = logging.getLogger("ragtune.assistant")

CHARS_PER_TOKEN = 3  # the estimate when no tokenizer is at hand: errs towards counting more


class OpenAIModel:
    """A chat model on an OpenAI-compatible server.

    Args:
        config: ``base_url``, ``api_key``, ``served_model``, ``native_tools``, ``context_window``, ``model``.
        home: The data home (where the base model's tokenizer may be found).
        adapter: An adapter folder, or "" for the base model; it is asked for by its folder's name.

    Raises:
        AssistantError: the adapter was trained for another base model.
    """

    def __init__(self, config: AssistantConfig, home: Path, adapter: str = "") -> None:
        import openai

        self.name = config.model
        self.base_url = config.base_url.rstrip("/")
        self.served_model = config.served_model or config.model
        self.context_window = config.context_window
        self.supports_tools = config.native_tools
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=config.api_key or _env_key() or "none",
            timeout=config.request_timeout,
            max_retries=1,
        )
        self._shared: dict[str, Any] = {"home": home}  # the tokenizer, loaded on first count, shared by views
        self.adapter = ""
        if adapter:
            self._check(adapter)
            self.adapter = adapter

    @property
    def tokenizer(self) -> Any:
        """The base model's tokenizer when it is at hand here, else None (counts are estimated)."""
        if "tokenizer" not in self._shared:
            self._shared["tokenizer"] = _tokenizer(self.name, self._shared["home"])
        return self._shared["tokenizer"]

    @property
    def request_model(self) -> str:
        """The model name sent to the server: the adapter's name, or the base model's served name."""
        return Path(self.adapter).name if self.adapter else self.served_model

    def with_adapter(self, adapter: str) -> OpenAIModel:
        """The same server connection asking for another adapter (a folder, or "" for the base model)."""
        if adapter:
            self._check(adapter)
        view = copy.copy(self)
        view.adapter = adapter
        return view

    def _check(self, adapter: str) -> None:
        try:
            check_fits(adapter, self.name)
        except FinetuneError as e:
            raise AssistantError(str(e)) from None

    # counting ------------------------------------------------------------------------------

    def count_tokens(self, messages: list[Message], tools: list[Schema] | None = None) -> int:
        if self.tokenizer is None:
            text = json.dumps(tools or []) + "".join(str(m.get("content") or "") for m in messages)
            calls = "".join(json.dumps(m.get("tool_calls") or "", default=str) for m in messages)
            return (len(text) + len(calls)) // CHARS_PER_TOKEN + 4 * len(messages) + 1
        native = tools if tools and "tools" in str(self.tokenizer.chat_template) else None
        count = self.count_text(render_chat(self.tokenizer, _plain_arguments(messages), native, generation=True))
        return count + (self.count_text(json.dumps(tools)) if tools and native is None else 0)

    def count_text(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text) // CHARS_PER_TOKEN + 1
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # generation ----------------------------------------------------------------------------

    def stream(
        self,
        messages: list[Message],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        tools: list[Schema] | None = None,
    ) -> Iterator[str]:
        """Yield the reply piece by piece, then any tool calls as ``<tool_call>`` text.

        Closing the iterator early closes the HTTP stream, which ends the generation on the server.

        Raises:
            AssistantError: the server cannot be reached, refuses the key, lacks the model, or fails.
        """
        import openai

        request: dict[str, Any] = {
            "model": self.request_model,
            "messages": [_wire(m) for m in messages],
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "stream": True,
        }
        if tools:
            request["tools"] = list(tools)
        calls: dict[int, dict[str, str]] = {}
        try:
            response = self.client.chat.completions.create(**request)
            with response:  # leaving early closes the connection
                for chunk in response:
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    if delta.content:
                        yield delta.content
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"name": "", "arguments": ""})
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
        except openai.APIError as e:
            raise AssistantError(self._explain(e)) from None
        for slot in calls.values():
            try:
                arguments: Any = json.loads(slot["arguments"] or "{}")
            except json.JSONDecodeError:
                arguments = slot["arguments"]  # the agent reports it to the model as bad arguments
            yield "<tool_call>" + json.dumps({"name": slot["name"], "arguments": arguments}) + "</tool_call>"

    def _explain(self, error: Exception) -> str:
        """One line saying what went wrong with the server and what to do."""
        import openai

        if isinstance(error, openai.APIConnectionError):
            return (
                f"cannot reach the model server at {self.base_url} ({type(error).__name__}): start it "
                '(docs/scaling.md has the vLLM command), or set backend = "local"'
            )
        if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            return f"the model server at {self.base_url} refused the API key: set api_key or $OPENAI_API_KEY"
        if isinstance(error, openai.NotFoundError):
            what = f"adapter {self.request_model!r}" if self.adapter else f"model {self.request_model!r}"
            hint = (
                "serve it with vLLM --enable-lora --lora-modules NAME=PATH (or `ragtune adapters activate` with "
                "load_adapters = true)"
                if self.adapter
                else "set served_model to a name GET /v1/models lists"
            )
            return f"the model server at {self.base_url} does not serve {what}: {hint}"
        detail = " ".join(str(getattr(error, "message", "") or error).split())[:200]
        status = getattr(error, "status_code", None)
        return f"the model server at {self.base_url} failed{f' ({status})' if status else ''}: {detail}"

    # adapters on the server ------------------------------------------------------------------

    def load_adapter(self, name: str, folder: str) -> None:
        """Ask the server to load an adapter now (vLLM with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``).

        Raises:
            AssistantError: the server has no runtime LoRA endpoint, or could not load the folder.
        """
        import openai

        try:
            self.client.post("/load_lora_adapter", body={"lora_name": name, "lora_path": folder}, cast_to=str)
        except openai.APIError as e:
            status = getattr(e, "status_code", None)
            if status in (404, 405):
                raise AssistantError(
                    f"the model server at {self.base_url} has no runtime LoRA endpoint: start vLLM with "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (or ragtune serve with runtime_lora = true), "
                    "or restart it with --lora-modules"
                ) from None
            detail = " ".join(str(getattr(e, "message", "") or e).split())[:200]
            if status == 400 and "already" in detail.lower():
                return  # vLLM: the adapter is already loaded under this name
            raise AssistantError(
                f"the model server at {self.base_url} could not load adapter {name!r} from {folder}: {detail}"
            ) from None


def _env_key() -> str:
    return os.environ.get("OPENAI_API_KEY", "")


def _tokenizer(model: str, home: Path) -> Any:
    """The base model's tokenizer if it is at hand here; None means estimate."""
    try:
        return chat_tokenizer(model, resolve_model_path(model, home))
    except Exception as e:  # a served name with no local files: counts are estimated
        log.info("no tokenizer for %s here (%s): token counts are estimated", model, type(e).__name__)
        return None


def _plain_arguments(messages: list[Message]) -> list[Message]:
    """Tool call arguments as objects, as chat templates expect them."""
    return [
        {
            **m,
            "tool_calls": [
                {**c, "function": {**c["function"], "arguments": arguments_object(c["function"].get("arguments"))}}
                for c in m["tool_calls"]
            ],
        }
        if m.get("tool_calls")
        else m
        for m in messages
    ]


def _wire(message: Message) -> dict[str, Any]:
    """A message as the OpenAI API takes it: tool call arguments as JSON text, only the fields it knows."""
    role = message["role"]
    out: dict[str, Any] = {"role": role, "content": message.get("content") or ""}
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": c.get("id") or f"call_{n}",
                "type": "function",
                "function": {
                    "name": c["function"]["name"],
                    "arguments": a if isinstance(a := c["function"].get("arguments"), str) else json.dumps(a),
                },
            }
            for n, c in enumerate(message["tool_calls"])
        ]
    if role == "tool":
        out["tool_call_id"] = message.get("tool_call_id", "")
    return out
