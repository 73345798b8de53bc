"""``ragtune serve``: the assistant behind an OpenAI-compatible API.

Any OpenAI client (the ``openai`` package, Open WebUI, LibreChat, curl) can talk
to it. The model name picks the adapter and the mode, ``ADAPTER[:MODE]``:

- ``ADAPTER``: ``base``, ``active`` (looked up per request) or a registered adapter's name.
- no mode: the model itself, on the conversation as sent; the client's ``tools`` are
  offered and calls come back as ``tool_calls`` (what the ``openai`` backend uses).
- ``:rag``: ragtune's grounded answer over the documents, with numbered citations.
- ``:agent``: ragtune's agent, calling ragtune's tools on this machine.

``:rag`` and ``:agent`` answer the last user message with the earlier user and
assistant turns as history; system messages are ignored there (ragtune writes its
own). Their sources and tool steps come back in the extension field ``ragtune``:
on the completion object, or on the streamed chunk that carries ``finish_reason``.

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``
(SSE when ``stream``), ``GET /health``; with ``runtime_lora``, vLLM's
``POST /v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``. With an API key
configured every ``/v1`` request needs ``Authorization: Bearer KEY``. Errors
have OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assistant.agent import AgentRun
from assistant.errors import AssistantError
from assistant.events import Answer, Token, ToolCall, ToolResult
from assistant.prompt import check_question
from assistant.toolcalls import arguments_object, parse_tool_calls, tool_prompt
from assistant.tools import ToolRegistry
from assistant.workspace import Workspace
from finetune.errors import FinetuneError
from ingest.errors import IngestError

log = logging.getLogger("ragtune.serve")

MODES = ("", "rag", "agent")
MAX_CHARS_PER_TOKEN = 64  # no tokenizer packs more characters into one token: longer prompts cannot fit
MAX_MODEL_NAME = 200
KEYWORDS = ("base", "active")


class ApiError(Exception):
    """A request the API refuses, with OpenAI's error fields."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str = ""
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code or None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# --- the request ---------------------------------------------------------------------------


class _Function(BaseModel):
    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


class _Tool(BaseModel):
    type: Literal["function"]
    function: _Function


class _CallFunction(BaseModel):
    name: str
    arguments: str | dict[str, Any] = "{}"


class _Call(BaseModel):
    id: str = ""
    type: Literal["function"] = "function"
    function: _CallFunction


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str = ""


class _Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None
    name: str | None = None
    tool_calls: list[_Call] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(p.type != "text" for p in self.content):
            raise ApiError(400, "only text content is supported", param="messages")
        return "".join(p.text for p in self.content)


class _StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of ``/v1/chat/completions`` that are honoured; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int = Field(default=1, ge=1, le=1)
    tools: list[_Tool] | None = None
    tool_choice: Literal["auto", "none"] | dict[str, Any] | None = None


class LoraRequest(BaseModel):
    """vLLM's ``/v1/load_lora_adapter`` body."""

    lora_name: str
    lora_path: str


# --- answering -------------------------------------------------------------------------------


@dataclass
class Reply:
    """What one completion produced, filled in as the events pass."""

    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI tool_calls
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish: str = "stop"
    extension: dict[str, Any] | None = None


class Api:
    """The API's state over a :class:`Workspace`: models, adapters loaded at run time, the key.

    Args:
        ws: The data home's documents, model and adapters.
        api_key: The bearer token clients must send; "" for none.
        runtime_lora: Accept ``/v1/load_lora_adapter`` with a folder on this machine.
    """

    def __init__(self, ws: Workspace, api_key: str = "", runtime_lora: bool = False) -> None:
        self.ws, self.api_key, self.runtime_lora = ws, api_key, runtime_lora
        self.runtime: dict[str, str] = {}  # adapter name -> folder, loaded through the API
        self.created = int(time.time())

    # models ------------------------------------------------------------------------------------

    def adapter_names(self) -> list[str]:
        return [*KEYWORDS, *dict.fromkeys([*self.ws.adapter_names(), *self.runtime])]

    def models(self) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{name}:{mode}" if mode else name,
                "object": "model",
                "created": self.created,
                "owned_by": "ragtune",
                "ragtune": {"adapter": name, "mode": mode or "model", "base_model": self.ws.config.model},
            }
            for name in self.adapter_names()
            for mode in MODES
        ]

    def parse_model(self, model: str) -> tuple[str, str]:
        """(adapter folder or "", mode) of a model name.

        Raises:
            ApiError: 404 when no such model is served.
        """
        if len(model) > MAX_MODEL_NAME:
            raise ApiError(
                404, f"the model name is {len(model):,} characters long: GET /v1/models lists the models", param="model"
            )
        name, _, mode = model.partition(":")
        missing = ApiError(
            404,
            f"the model {model!r} does not exist: GET /v1/models lists them (ADAPTER, ADAPTER:rag, ADAPTER:agent)",
            param="model",
            code="model_not_found",
        )
        if mode not in MODES:
            raise missing
        if name == "base":
            return "", mode
        if name in self.runtime:
            return self.runtime[name], mode
        if name == "active":
            return self.ws.registry().resolve("active"), mode
        try:
            return str(self.ws.registry().get(name).path), mode
        except FinetuneError:
            raise missing from None

    # completions -------------------------------------------------------------------------------

    def prepare(self, request: ChatRequest) -> Generator[Token, None, Reply]:
        """Check ``request`` and return the generator of its answer (nothing generated yet).

        Raises:
            ApiError: the request cannot be answered; nothing has been sent yet.
        """
        folder, mode = self.parse_model(request.model)
        config = self.ws.config
        max_tokens = request.max_completion_tokens or request.max_tokens or config.answer_tokens
        temperature = config.temperature if request.temperature is None else request.temperature
        model = self.ws.base_model().with_adapter(folder)
        if max_tokens >= model.context_window:
            raise ApiError(
                400, f"max_tokens must be below the context window ({model.context_window})", param="max_tokens"
            )
        messages = [self._message(m) for m in request.messages]
        if mode:
            return self._ragtune(
                mode, model, messages, dataclasses.replace(config, answer_tokens=max_tokens, temperature=temperature)
            )
        tools = [t.model_dump() for t in request.tools or []] if request.tool_choice != "none" else []
        return self._plain(model, messages, tools, max_tokens, temperature)

    def _message(self, m: _Message) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        if m.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": arguments_object(c.function.arguments)},
                }
                for c in m.tool_calls
            ]
        if m.role == "tool":
            out["tool_call_id"] = m.tool_call_id or ""
            if m.name:
                out["name"] = m.name
        return out

    def _ragtune(
        self, mode: str, model: Any, messages: list[dict[str, Any]], config: Any
    ) -> Generator[Token, None, Reply]:
        if messages[-1]["role"] != "user":
            raise ApiError(400, f":{mode} models answer the last message, which must be the user's", param="messages")
        question = messages[-1]["content"]
        try:
            check_question(question, config.max_question_chars)
        except AssistantError as e:
            raise ApiError(400, str(e), param="messages") from None
        history = [
            {"role": m["role"], "content": m["content"]}
            for m in messages[:-1]
            if m["role"] in ("user", "assistant") and m["content"]
        ]
        events = self.ws.respond(
            question,
            mode=mode,
            model=model,
            history=history,
            answer_tokens=config.answer_tokens,
            temperature=config.temperature,
        )
        return self._from_events(events, config.answer_tokens)

    @staticmethod
    def _from_events(events: Iterator[Any], max_tokens: int) -> Generator[Token, None, Reply]:
        reply, results = Reply(), []
        for event in events:
            if isinstance(event, Token):
                yield event
            elif isinstance(event, ToolResult):
                results.append(event.to_dict())
            elif isinstance(event, Answer):
                reply.text = event.text
                reply.prompt_tokens, reply.completion_tokens = event.prompt_tokens, event.completion_tokens
                extension = {k: v for k, v in event.to_dict().items() if k not in ("answer", "question")}
                if event.stopped:
                    extension["tool_results"] = results
                reply.extension = extension
            elif not isinstance(event, ToolCall):
                raise AssertionError(f"unexpected event {event!r}")
        if reply.completion_tokens >= max_tokens:
            reply.finish = "length"
        return reply

    def _plain(
        self,
        model: Any,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
    ) -> Generator[Token, None, Reply]:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
        transcript = [m for m in messages if m["role"] != "system"]
        prompt, native = tool_prompt(system, transcript, tools or None, model.supports_tools)
        chars = sum(len(str(m.get("content") or "")) for m in prompt) + len(json.dumps(native or []))
        if chars > model.context_window * MAX_CHARS_PER_TOKEN:  # far too long: refused before tokenising
            raise ApiError(
                400,
                f"the messages hold {chars:,} characters, more than the context window ({model.context_window} "
                "tokens) can take: shorten them",
                param="messages",
                code="context_length_exceeded",
            )
        tokens = model.count_tokens(prompt, native)
        if tokens + max_tokens > model.context_window:
            raise ApiError(
                400,
                f"the messages take {tokens} tokens; with max_tokens {max_tokens} that exceeds the context window "
                f"({model.context_window}): shorten them or lower max_tokens",
                param="messages",
                code="context_length_exceeded",
            )
        run = AgentRun(model, ToolRegistry(), max_tokens, temperature)  # the model itself, as the client asked
        return self._generate(run, prompt, native, tokens, bool(tools))

    @staticmethod
    def _generate(
        run: AgentRun, prompt: list[dict[str, Any]], native: list[dict[str, Any]] | None, tokens: int, tools: bool
    ) -> Generator[Token, None, Reply]:
        text, emitted = yield from run.reply(prompt, native, stream_all=not tools, prompt_tokens=tokens)
        reply = Reply(text=text, prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens)
        parsed = parse_tool_calls(text) if tools else None
        if parsed is not None and parsed.calls and not parsed.error:
            reply.text = parsed.text
            reply.calls = [
                {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
                }
                for name, arguments in parsed.calls
            ]
            reply.finish = "tool_calls"
            return reply
        if len(text) > emitted:  # a reply held back because it looked like a call, but was not one
            yield Token(text[emitted:])
        if reply.completion_tokens >= run.answer_tokens:
            reply.finish = "length"
        return reply

    # adapters at run time ----------------------------------------------------------------------

    def load_adapter(self, name: str, folder: str) -> None:
        if not self.runtime_lora:
            raise ApiError(404, "runtime adapter loading is off: start ragtune serve with runtime_lora = true")
        if not name or ":" in name or "/" in name or name in KEYWORDS:
            raise ApiError(400, f"{name!r} is not a usable adapter name", param="lora_name")
        if name in self.runtime and Path(self.runtime[name]).resolve() == Path(folder).resolve():
            return
        try:
            self.ws.base_model().with_adapter(folder)  # checked against the base model, loaded once
        except AssistantError as e:
            raise ApiError(400, str(e), param="lora_path") from None
        self.runtime[name] = folder

    def unload_adapter(self, name: str) -> None:
        if not self.runtime_lora:
            raise ApiError(404, "runtime adapter loading is off: start ragtune serve with runtime_lora = true")
        if self.runtime.pop(name, None) is None:
            raise ApiError(404, f"no adapter {name!r} was loaded at run time", param="lora_name")


# --- HTTP ---------------------------------------------------------------------------------------


def create_api(ws: Workspace, api_key: str = "", runtime_lora: bool = False) -> Any:
    """The FastAPI application of ``ragtune serve`` over ``ws``."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    api = Api(ws, api_key, runtime_lora)
    limit = int(ws.settings.serve.max_request_mb * 2**20)
    app = FastAPI(title="ragtune", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.api = api

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p != "body"]
        message = f"{'.'.join(where) or 'body'}: {first.get('msg', 'invalid request')}"
        return JSONResponse(ApiError(400, message, param=".".join(where) or None).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse(ApiError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.middleware("http")
    async def _size(request: Request, call_next: Any) -> Any:  # before the body is read
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None:
                error = ApiError(411, "send the request with a Content-Length header", code="length_required")
                return JSONResponse(error.body(), status_code=411)
            if not length.isdigit() or int(length) > limit:
                error = ApiError(
                    413,
                    f"the request is over the {limit / 2**20:g} MB limit (serve.max_request_mb): send less",
                    code="request_too_large",
                )
                return JSONResponse(error.body(), status_code=413)
        return await call_next(request)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        if api.api_key and request.url.path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api.api_key.encode()):
                error = ApiError(
                    401,
                    "missing or wrong API key: send it as Authorization: Bearer KEY",
                    kind="authentication_error",
                    code="invalid_api_key",
                )
                return JSONResponse(error.body(), status_code=401)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": await run_in_threadpool(api.models)}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        for m in await run_in_threadpool(api.models):
            if m["id"] == model_id:
                return m
        raise ApiError(404, f"the model {model_id!r} does not exist", param="model", code="model_not_found")

    @app.post("/v1/chat/completions")
    async def completions(request: ChatRequest) -> Any:
        answer = await run_in_threadpool(_prepared, api, request)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not request.stream:
            reply = await run_in_threadpool(_drain, answer)
            return _completion(cid, created, request.model, reply)
        usage = bool(request.stream_options and request.stream_options.include_usage)
        return StreamingResponse(
            _sse(answer, cid, created, request.model, usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/load_lora_adapter")
    async def load_lora(body: LoraRequest) -> Any:
        from fastapi.responses import PlainTextResponse

        await run_in_threadpool(api.load_adapter, body.lora_name, body.lora_path)
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora(body: dict[str, Any]) -> Any:
        from fastapi.responses import PlainTextResponse

        api.unload_adapter(str(body.get("lora_name", "")))
        return PlainTextResponse(f"Success: LoRA adapter '{body.get('lora_name')}' removed successfully.")

    return app


def _prepared(api: Api, request: ChatRequest) -> Generator[Token, None, Reply]:
    """``api.prepare`` with the assistant's one-line errors as 400s (404 for a missing adapter folder)."""
    try:
        return api.prepare(request)
    except (AssistantError, FinetuneError, IngestError) as e:
        raise ApiError(400, str(e)) from None


def _drain(answer: Generator[Token, None, Reply]) -> Reply:
    try:
        while True:
            next(answer)
    except StopIteration as done:
        return done.value
    except (AssistantError, ValueError) as e:
        raise ApiError(500, str(e), kind="server_error") from None


def _completion(cid: str, created: int, model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.calls:
        message["tool_calls"] = reply.calls
    out: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish, "logprobs": None}],
        "usage": _usage(reply),
    }
    if reply.extension is not None:
        out["ragtune"] = reply.extension
    return out


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


async def _sse(
    answer: Generator[Token, None, Reply], cid: str, created: int, model: str, usage: bool
) -> AsyncIterator[str]:
    """The answer as server-sent chunks; a client that disconnects ends the generation."""

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
            if delta is not None
            else [],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    reply: Reply | None = None
    try:
        async for item in _in_thread(answer):
            if isinstance(item, Token):
                yield chunk({"content": item.text})
            else:
                reply = item
    except Exception as e:  # the status line is sent: the error goes in the stream, as OpenAI does
        log.warning("streaming failed: %s", e)
        kind = "invalid_request_error" if isinstance(e, AssistantError) else "server_error"
        error = ApiError(500, " ".join(str(e).split()) or type(e).__name__, kind=kind)
        yield f"data: {json.dumps(error.body())}\n\n"
        yield "data: [DONE]\n\n"
        return
    assert reply is not None
    if reply.calls:
        calls = [{"index": n, **c} for n, c in enumerate(reply.calls)]
        yield chunk({"tool_calls": calls})
    extra = {"ragtune": reply.extension} if reply.extension is not None else {}
    yield chunk({}, reply.finish, **extra)
    if usage:
        yield chunk(None, usage=_usage(reply))
    yield "data: [DONE]\n\n"


_END = object()


async def _in_thread(answer: Generator[Token, None, Reply]) -> AsyncIterator[Any]:
    """Run the blocking generator in its own thread: its tokens, then its return value.

    When the consumer stops (a client disconnect cancels the response), the thread closes
    the generator after the token in hand, which stops the model.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = threading.Event()

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone: the server is shutting down
            cancelled.set()

    def pump() -> None:
        try:
            while not cancelled.is_set():
                try:
                    item = next(answer)
                except StopIteration as done:
                    put("return", done.value)
                    return
                put("item", item)
        except BaseException as e:
            put("error", e)
        finally:
            answer.close()
            put("end", None)

    threading.Thread(target=pump, daemon=True, name="ragtune-serve-answer").start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        cancelled.set()


# --- running -----------------------------------------------------------------------------------


class Serving:
    """``ragtune serve``'s app under uvicorn in a background thread (tests, benchmarks)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="ragtune-serve")
        self.host = host

    @property
    def url(self) -> str:
        """The base URL clients use, ending in /v1."""
        sockets = self.server.servers[0].sockets
        port = sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}/v1"

    def start(self) -> Serving:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssistantError(f"ragtune serve did not start on {self.host}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve(ws: Workspace, host: str, port: int, api_key: str = "", runtime_lora: bool = False) -> None:
    """Serve the API until Ctrl-C."""
    import uvicorn

    uvicorn.run(create_api(ws, api_key, runtime_lora), host=host, port=port, log_level="info", access_log=False)
