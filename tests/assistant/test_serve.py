"""`ragtune serve` under uvicorn on loopback, driven by the real `openai` package; the `openai` backend against it."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from assistant.agent import run_agent
from assistant.api import Serving, create_api
from assistant.config import AssistantConfig
from assistant.errors import AssistantError
from assistant.events import Answer, ToolCall, ToolResult
from assistant.model import LocalModel
from assistant.openai_model import OpenAIModel
from assistant.settings import Settings
from assistant.tools import ToolRegistry, tool
from assistant.workspace import Workspace
from finetune.adapters import Registry as Adapters
from ingest import IngestConfig, ingest
from tests.conftest import ScriptedModel, free_port, trained_adapter

KEY = "sekret-key"
DOCS = {
    "battery.md": "# Battery\n\nThe battery pack holds 48 cells and charges in 90 minutes. " * 6,
    "inverter.txt": "The inverter converts direct current to alternating current at 230 volts. " * 6,
}


@pytest.fixture
def home_docs(tmp_path: Path, tiny_config: IngestConfig) -> IngestConfig:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    ingest([docs], tiny_config, progress=False)
    return tiny_config


def _config(tiny_lm: str, **changes: object) -> AssistantConfig:
    return dataclasses.replace(
        AssistantConfig(model=tiny_lm, device="cpu", context_window=1024, answer_tokens=12, min_score=-1.0),
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
def served(home_docs: IngestConfig, tiny_lm: str) -> Iterator[tuple[str, Workspace]]:
    trained_adapter(tiny_lm, home_docs.home_path, "memo")
    ws = Workspace(Settings(ingest=home_docs, assistant=_config(tiny_lm)))
    running = Serving(create_api(ws, KEY, runtime_lora=True)).start()
    try:
        yield running.url, ws
    finally:
        running.stop()


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def test_models_are_listed_and_the_key_is_required(served: tuple[str, Workspace]) -> None:
    url, _ws = served
    ids = [m.id for m in client(url).models.list()]
    for name in ("base", "active", "memo"):
        assert {name, f"{name}:rag", f"{name}:agent"} <= set(ids)
    memo = client(url).models.retrieve("memo:rag")
    assert memo.model_extra is not None and memo.model_extra["ragtune"]["mode"] == "rag"

    with pytest.raises(openai.AuthenticationError) as wrong:
        client(url, "wrong").models.list()
    assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
    bare = httpx.post(f"{url}/chat/completions", json={"model": "base", "messages": []})
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "authentication_error"
    assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


def test_rag_answers_stream_with_sources_in_the_extension_field(served: tuple[str, Workspace]) -> None:
    url, _ws = served
    question = [{"role": "user", "content": "How many cells does the battery pack hold?"}]
    whole = client(url).chat.completions.create(model="base:rag", messages=question, max_tokens=12)
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    extension = whole.model_extra["ragtune"]  # type: ignore[index]
    assert whole.ragtune == extension  # type: ignore[attr-defined]  # as the README shows it
    sources = {Path(s["source"]).name for s in extension["sources"]}
    assert "battery.md" in sources and all(s["text"] for s in extension["sources"])
    assert whole.usage is not None and whole.usage.prompt_tokens > 20 and whole.usage.completion_tokens > 0

    chunks = list(
        client(url).chat.completions.create(
            model="base:rag", messages=question, max_tokens=12, stream=True, stream_options={"include_usage": True}
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 2 and "".join(pieces) == text, "streamed pieces make the same greedy answer"
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert last.model_extra is not None and last.model_extra["ragtune"]["sources"] == extension["sources"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_history_reaches_the_rag_answer(served: tuple[str, Workspace]) -> None:
    url, _ws = served
    messages = [
        {"role": "system", "content": "ignored in :rag"},
        {"role": "user", "content": "Tell me about the inverter."},
        {"role": "assistant", "content": "It converts current."},
        {"role": "user", "content": "At what voltage?"},
    ]
    whole = client(url).chat.completions.create(model="active:rag", messages=messages, max_tokens=8)
    extension = whole.model_extra["ragtune"]  # type: ignore[index]
    assert extension["query"] != "At what voltage?", "the follow-up was rewritten with the history"


def test_the_model_name_picks_the_adapter(served: tuple[str, Workspace], tiny_lm: str) -> None:
    url, ws = served
    messages = [{"role": "user", "content": "the battery"}]
    base = client(url).chat.completions.create(model="base", messages=messages, max_tokens=10)
    memo = client(url).chat.completions.create(model="memo", messages=messages, max_tokens=10)
    assert base.choices[0].message.content != memo.choices[0].message.content
    local = LocalModel(tiny_lm, ws.home, device="cpu", context_window=1024)
    expected = "".join(local.stream(messages, max_new_tokens=10))
    assert base.choices[0].message.content == expected, "the API returns what the model says directly"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "base", "messages": []}, 400, "messages"),
        ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
        ({"model": "base:summarise", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
        ({"model": "base", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
        ({"model": "base", "messages": [{"role": "user", "content": "hi"}], "temperature": 5}, 400, "temperature"),
        ({"model": "base", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
        ({"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}, 400, "max_tokens"),
        ({"model": "base:rag", "messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages"),
        (
            {"model": "base", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            400,
            "messages",
        ),
        ({"model": "base", "messages": [{"role": "user", "content": "word " * 2000}]}, 400, "messages"),
    ],
)
def test_bad_requests_get_openai_error_bodies(
    served: tuple[str, Workspace], body: dict, status: int, param: str
) -> None:
    url, _ws = served
    response = httpx.post(f"{url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and "\n" not in error["message"]
    assert error["type"] == "invalid_request_error"


def test_unparseable_json_is_a_400(served: tuple[str, Workspace]) -> None:
    url, _ws = served
    response = httpx.post(
        f"{url}/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"]["message"]


# --- tool calls, with a scripted model behind the server -----------------------------------------


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: e.g. 6*7
    """
    if expression.replace(" ", "") != "6*7":
        raise ValueError("only 6*7 here")
    return "6*7 = 42"


@pytest.fixture
def scripted_server(home_docs: IngestConfig, tiny_lm: str) -> Iterator[tuple[str, ScriptedModel]]:
    model = ScriptedModel(context_window=4096)
    ws = Workspace(Settings(ingest=home_docs, assistant=_config(tiny_lm)), model=model)
    running = Serving(create_api(ws, KEY)).start()
    try:
        yield running.url, model
    finally:
        running.stop()


def test_a_client_that_goes_away_stops_the_generation(scripted_server: tuple[str, ScriptedModel]) -> None:
    url, model = scripted_server
    model.delay = 0.02
    model.enqueue("word " * 1000)
    stream = client(url).chat.completions.create(
        model="base", messages=[{"role": "user", "content": "talk"}], max_tokens=1000, stream=True
    )
    for n, _chunk in enumerate(stream):
        if n == 5:
            break
    stream.close()
    deadline = time.monotonic() + 10
    while model.emitted < 1000 and time.monotonic() < deadline:
        before = model.emitted
        time.sleep(0.5)
        if model.emitted == before:
            break
    assert not model.finished and model.emitted < 200, "the server stopped reading the model when the client left"


CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>'


@pytest.mark.parametrize("stream", [False, True])
def test_client_tools_come_back_as_tool_calls(scripted_server: tuple[str, ScriptedModel], stream: bool) -> None:
    url, model = scripted_server
    model.enqueue(CALL)
    request = {
        "model": "base",
        "messages": [{"role": "user", "content": "What is 6 times 7?"}],
        "tools": [calculator.schema()],
        "max_tokens": 64,
    }
    if stream:
        chunks = list(client(url).chat.completions.create(**request, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert not any(d.content for d in deltas), "a call is not streamed as text"
        calls = [tc for d in deltas for tc in d.tool_calls or []]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        whole = client(url).chat.completions.create(**request)
        calls = whole.choices[0].message.tool_calls or []
        finish = [whole.choices[0].finish_reason]
    assert finish == ["tool_calls"] and len(calls) == 1
    assert calls[0].function.name == "calculator" and json.loads(calls[0].function.arguments) == {"expression": "6*7"}
    assert calls[0].id.startswith("call_")
    assert '"name": "calculator"' in model.prompts[0][0]["content"], "the schema reached the model's prompt"


def test_the_agent_on_the_openai_backend_calls_tools_through_the_server(
    scripted_server: tuple[str, ScriptedModel], tiny_lm: str, tmp_path: Path
) -> None:
    url, served_model = scripted_server
    served_model.enqueue(CALL, "6 times 7 is 42.")
    remote = OpenAIModel(
        _config(tiny_lm, backend="openai", base_url=url, api_key=KEY, served_model="base", context_window=4096),
        tmp_path,
    )
    events = list(run_agent("What is 6 times 7?", remote, ToolRegistry([calculator]), answer_tokens=64))
    calls = [e for e in events if isinstance(e, ToolCall)]
    results = [e for e in events if isinstance(e, ToolResult)]
    answer = events[-1]
    assert isinstance(answer, Answer) and answer.text == "6 times 7 is 42."
    assert [(c.name, c.arguments) for c in calls] == [("calculator", {"expression": "6*7"})]
    assert results[0].content == "6*7 = 42"
    second = served_model.prompts[1]
    assert "<tool_call>" in second[-2]["content"] and "6*7 = 42" in second[-1]["content"], (
        "the call and its result went back to the server as OpenAI messages"
    )


def test_synthetic_questions_come_from_the_openai_backend(
    scripted_server: tuple[str, ScriptedModel], home_docs: IngestConfig, tiny_lm: str
) -> None:
    from assistant.backends import load_model
    from assistant.model import complete
    from finetune.synth import LLM_PROMPT, Chunk, llm_questions

    url, served_model = scripted_server
    served_model.enqueue("Q: How many cells does the pack hold?\nA: 48 cells")
    config = _config(tiny_lm, backend="openai", base_url=url, api_key=KEY, served_model="base")
    chunk = Chunk("c1", DOCS["battery.md"], {"source": "battery.md"})
    remote = load_model(config, home_docs.home_path, "")
    pairs = llm_questions(chunk, 1, lambda messages: complete(remote, messages, max_new_tokens=160))
    assert [(p.question, p.answer) for p in pairs] == [("How many cells does the pack hold?", "48 cells")]
    assert served_model.prompts[0][-1]["content"] == LLM_PROMPT.format(count=1, text=chunk.text)


# --- the openai backend against a real ragtune serve ----------------------------------------------


def test_the_openai_backend_answers_as_the_local_model(
    served: tuple[str, Workspace], tiny_lm: str, tmp_path: Path
) -> None:
    url, ws = served
    config = _config(tiny_lm, backend="openai", base_url=url, api_key=KEY, served_model="base")
    remote = OpenAIModel(config, tmp_path)
    local = LocalModel(tiny_lm, tmp_path, device="cpu", context_window=1024)
    messages = [{"role": "user", "content": "What does the inverter convert?"}]
    assert remote.count_tokens(messages) == local.count_tokens(messages), "the base model's own tokenizer counts"
    assert "".join(remote.stream(messages, max_new_tokens=10)) == "".join(local.stream(messages, max_new_tokens=10))

    memo = str(ws.home / "adapters" / "memo")
    tuned = remote.with_adapter(memo)
    assert tuned.request_model == "memo"
    assert "".join(tuned.stream(messages, max_new_tokens=10)) == "".join(
        local.with_adapter(memo).stream(messages, max_new_tokens=10)
    )


def test_evaluations_run_on_the_openai_backend(served: tuple[str, Workspace], tiny_lm: str) -> None:
    from assistant.backends import load_model
    from assistant.evaluate import Dataset, Question, evaluate_answers

    url, ws = served
    text = DOCS["battery.md"]
    dataset = Dataset(
        "cells",
        [Question("q1", "How many cells?", ("48",), "battery.md", ((text.index("48"), text.index("48") + 2),), text)],
        {"battery.md": text},
    )
    local_config = _config(tiny_lm)
    local_model = load_model(local_config, ws.home, "")
    local = evaluate_answers(dataset, ws.ingest, local_config, local_model, ["closed_book", "oracle"], answer_tokens=8)
    remote_config = _config(tiny_lm, backend="openai", base_url=url, api_key=KEY, served_model="base")
    remote_model = load_model(remote_config, ws.home, "")
    remote = evaluate_answers(
        dataset, ws.ingest, remote_config, remote_model, ["closed_book", "oracle"], answer_tokens=8
    )
    for arm in ("closed_book", "oracle"):
        assert remote["arms"][f"base/{arm}"]["f1"] == local["arms"][f"base/{arm}"]["f1"]


def test_backend_errors_are_one_line_with_what_to_do(
    served: tuple[str, Workspace], tiny_lm: str, tmp_path: Path
) -> None:
    url, _ws = served
    messages = [{"role": "user", "content": "hi"}]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    cases = [
        (_config(tiny_lm, backend="openai", base_url=dead, request_timeout=5), "", "cannot reach the model server"),
        (_config(tiny_lm, backend="openai", base_url=url, api_key="wrong"), "", "refused the API key"),
        (_config(tiny_lm, backend="openai", base_url=url, api_key=KEY, served_model="nope"), "", "set served_model"),
    ]
    stray = trained_adapter(tiny_lm, tmp_path / "elsewhere", "stray")
    remote = _config(tiny_lm, backend="openai", base_url=url, api_key=KEY, served_model="base")
    cases.append((remote, str(stray), "--lora-modules"))
    for config, adapter, expected in cases:
        with pytest.raises(AssistantError, match=expected) as info:
            list(OpenAIModel(config, tmp_path, adapter).stream(messages, max_new_tokens=4))
        assert "\n" not in str(info.value)
    with pytest.raises(AssistantError, match="needs base_url"):
        _config(tiny_lm, backend="openai")


def test_activate_loads_the_adapter_into_the_server_first(
    served: tuple[str, Workspace], tiny_lm: str, tmp_path: Path
) -> None:
    """A second data home whose adapter the server has never seen: activation loads it through the runtime endpoint."""
    from assistant.training import activate_adapter

    url, _ws = served
    home = tmp_path / "client-home"
    trained_adapter(tiny_lm, home, "fresh")
    config = _config(tiny_lm, backend="openai", base_url=url, api_key=KEY, served_model="base", load_adapters=True)
    assert "fresh" not in [m.id for m in client(url).models.list()]
    assert activate_adapter(config, home, "fresh") == "fresh"
    assert "fresh:rag" in [m.id for m in client(url).models.list()]
    hello = [{"role": "user", "content": "hi"}]
    reply = client(url).chat.completions.create(model="fresh", messages=hello, max_tokens=4)
    assert reply.choices[0].message.content is not None

    trained_adapter(tiny_lm, home, "refused", recorded_base="someone/else")
    with pytest.raises(AssistantError, match="trained for base model"):
        activate_adapter(config, home, "refused")
    assert Adapters(home).active() == "fresh", "a failed load leaves the active adapter as it was"


def test_activate_against_a_server_without_runtime_loading(
    home_docs: IngestConfig, tiny_lm: str, tmp_path: Path
) -> None:
    from assistant.training import activate_adapter

    ws = Workspace(Settings(ingest=home_docs, assistant=_config(tiny_lm)))
    running = Serving(create_api(ws)).start()
    try:
        home = tmp_path / "client-home"
        trained_adapter(tiny_lm, home, "fresh")
        config = _config(tiny_lm, backend="openai", base_url=running.url, load_adapters=True)
        with pytest.raises(AssistantError, match="runtime_lora = true"):
            activate_adapter(config, home, "fresh")
        assert Adapters(home).active() is None
    finally:
        running.stop()


# --- the commands ---------------------------------------------------------------------------------


def test_ragtune_serve_and_ragtune_ask_on_the_openai_backend(home_docs: IngestConfig, tiny_lm: str) -> None:
    port = free_port()
    common = ["--set", f"embedding_model={home_docs.embedding_model}", "--set", f"model={tiny_lm}"]
    env = {**os.environ, "RAGTUNE_API_KEY": KEY, "OPENAI_API_KEY": KEY, "RAGTUNE_HOME": str(home_docs.home_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "assistant", "serve", "--port", str(port), "--device", "cpu", *common],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url.removesuffix("/v1") + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "ragtune serve did not start"
            time.sleep(0.3)
        assert "base:rag" in [m.id for m in client(url).models.list()]
        asked = subprocess.run(
            [
                sys.executable, "-m", "assistant", "ask", "How many cells does the battery hold?", "--json",
                *common, "--set", "backend=openai", "--set", f"base_url={url}", "--set", "served_model=base",
                "--set", "answer_tokens=8",
            ],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        answer = json.loads(asked.stdout)
        assert answer["answer"] and any(Path(s["source"]).name == "battery.md" for s in answer["sources"])
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_vllm_command_serves_the_base_model_and_the_active_adapter(
    tiny_lm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shlex

    from assistant.cli import main

    home = tmp_path / "home"
    trained_adapter(tiny_lm, home, "memo")
    trained_adapter(tiny_lm, home, "other")
    Adapters(home).activate("memo")
    common = ["--home", str(home), "--set", f"model={tiny_lm}"]
    assert main(["adapters", "vllm", *common]) == 0
    argv = shlex.split(capsys.readouterr().out.splitlines()[0])
    assert argv[:4] == ["VLLM_ALLOW_RUNTIME_LORA_UPDATING=True", "vllm", "serve", str(Path(tiny_lm).resolve())]
    assert argv[argv.index("--served-model-name") + 1] == tiny_lm
    assert argv[argv.index("--max-lora-rank") + 1] == "8", "rank 4 rounds up to vLLM's smallest, 8"
    modules = argv[argv.index("--lora-modules") + 1 : argv.index("--enable-auto-tool-choice")]
    assert modules == [f"memo={(home / 'adapters' / 'memo').resolve()}"]
    assert main(["adapters", "vllm", "--all", "--set", "native_tools=false", *common]) == 0
    argv = shlex.split(capsys.readouterr().out.splitlines()[0])
    assert sorted(argv[argv.index("--lora-modules") + 1 :]) == sorted(
        f"{name}={(home / 'adapters' / name).resolve()}" for name in ("memo", "other")
    )


def test_a_busy_port_is_a_one_line_error(tiny_lm: str, capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--set", f"model={tiny_lm}"]) != 0
    error = capsys.readouterr().err.strip()
    assert f"cannot serve on 127.0.0.1:{port}" in error and "pick another --port" in error and "\n" not in error


def test_the_apis_own_key_is_never_sent_upstream(served: tuple[str, Workspace], tiny_lm: str) -> None:
    """``serve.api_key`` guards this server; only ``assistant.api_key`` goes to the model server behind it."""
    from assistant.cli import build_parser
    from assistant.cli.options import settings

    url, _ws = served
    common = ["serve", "--set", f"model={tiny_lm}", "--set", "backend=openai", "--set", f"base_url={url}"]
    common += ["--set", "served_model=base"]
    with pytest.raises(AssistantError, match="several sections"):
        settings(build_parser().parse_args([*common, "--set", f"api_key={KEY}"]))
    own_key_only = settings(build_parser().parse_args([*common, "--set", f"serve.api_key={KEY}"]))
    assert own_key_only.serve.key() == KEY and own_key_only.assistant.api_key == ""
    hello = [{"role": "user", "content": "hi"}]
    with pytest.raises(AssistantError, match="key"):
        "".join(Workspace(own_key_only).base_model().stream(hello, max_new_tokens=2))
    both = settings(
        build_parser().parse_args([*common, "--set", "serve.api_key=S", "--set", f"assistant.api_key={KEY}"])
    )
    assert "".join(Workspace(both).base_model().stream(hello, max_new_tokens=2)) is not None


def test_a_cli_ingest_into_the_same_home_is_answered_from_by_the_api_and_the_app(
    served: tuple[str, Workspace], tiny_config: IngestConfig, tmp_path: Path
) -> None:
    """Another process writes to the store while this one serves: the next question sees the new document."""
    from tests.conftest import run_ragtune

    url, ws = served
    question = [{"role": "user", "content": "What is the zebra code?"}]
    before = client(url).chat.completions.create(model="base:rag", messages=question, max_tokens=4)
    assert "zebra.md" not in {Path(s["source"]).name for s in before.ragtune["sources"]}  # type: ignore[attr-defined]
    new = tmp_path / "later"
    new.mkdir()
    (new / "zebra.md").write_text("# Zebra\n\nThe zebra code is ZX-41. Zebras graze at dawn.\n")
    common = ["--home", tiny_config.home, "--set", f"embedding_model={tiny_config.embedding_model}"]
    common += [
        "--set",
        f"chunk_tokens={tiny_config.chunk_tokens}",
        "--set",
        f"chunk_overlap={tiny_config.chunk_overlap}",
    ]
    done = run_ragtune("ingest", str(new), *common)
    assert done.returncode == 0, done.stderr
    after = client(url).chat.completions.create(model="base:rag", messages=question, max_tokens=4)
    sources = {Path(s["source"]).name for s in after.ragtune["sources"]}  # type: ignore[attr-defined]
    assert "zebra.md" in sources, sources
    answer = [e for e in ws.respond("What is the zebra code?", adapter="none") if isinstance(e, Answer)][-1]
    assert "zebra.md" in {Path(h.source).name for h in answer.sources}
    (new / "zebra.md").write_text("# Zebra\n\nThe zebra code changed to ZX-99.\n")  # a second outside write
    assert run_ragtune("ingest", str(new), *common).returncode == 0
    again = [e for e in ws.respond("What is the zebra code?", adapter="none") if isinstance(e, Answer)][-1]
    assert any("ZX-99" in h.text for h in again.sources) and not any("ZX-41" in h.text for h in again.sources)


def test_oversized_requests_and_names_are_refused_before_any_work(served: tuple[str, Workspace]) -> None:
    url, _ws = served
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    huge = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x" * (5 * 2**20)}]})
    started = time.perf_counter()
    refused = httpx.post(f"{url}/chat/completions", content=huge, headers=headers, timeout=30)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "request_too_large"
    assert time.perf_counter() - started < 5
    long = json.dumps({"model": "base", "messages": [{"role": "user", "content": "word " * 200_000}]})
    too_long = httpx.post(f"{url}/chat/completions", content=long, headers=headers, timeout=30)
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
    rag = json.dumps({"model": "base:rag", "messages": [{"role": "user", "content": "why? " * 5000}]})
    question = httpx.post(f"{url}/chat/completions", content=rag, headers=headers, timeout=30)
    assert question.status_code == 400 and "over the 8,000 limit" in question.json()["error"]["message"]
    name = json.dumps({"model": "m" * 5000, "messages": [{"role": "user", "content": "hi"}]})
    unknown = httpx.post(f"{url}/chat/completions", content=name, headers=headers, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
