"""The browser app's serving cost: time to first token through its API, and 20 concurrent sessions.

Sets up a data home with the sample corpus and the bundled models, then:

ttft: serves the app in this process and, alternating, ``--repeats`` times each,
  - direct: ``ask()`` on the app's own retriever and model (retrieval + prompt + prefill
    until the first token), timed in this process;
  - API: the same question through the app's ``/chat`` endpoint with ``gradio_client``
    (a fresh session each time), timed from submit to the first update carrying answer text.
  Prints both medians and the difference (target: API <= direct + 150 ms).

sessions: starts ``ragtune chat`` as its own process, then ``--sessions`` clients at once
  each ask a question about their own document (20 extra documents, one code word each),
  then, all at once again, a follow-up. Checks that every session got answers, that each
  session's chat holds only its own two questions and that each first answer's top source
  is its own document. Prints p50/p95 latency per round and the server's resident memory
  after warm-up and after each round (bounded: no growth between the rounds). Then reads the
  app's conversation store: each session's conversation must hold exactly its own questions.

store: ``--sessions`` threads at once each keep a conversation of ``--turns`` question/answer
  turns in one conversation store (as the app does after each answer), then every
  conversation is read back: no lost, extra or mixed message. Prints the writes per second.

The app keeps every answered turn in ``HOME/conversations.sqlite``: the TTFT above includes it.

Run:  python bench/app.py [ttft|sessions|store|all] [--repeats 5] [--sessions 20] [--turns 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

QUESTIONS = [
    "What does error E116 mean and how is it fixed?",
    "How long is the warranty?",
    "How do I pair the battery with the app?",
    "What is the battery's capacity?",
    "How do I update the firmware?",
    "What does the light ring show?",
    "How heavy is the battery?",
]
WORDS = [
    "amber",
    "basalt",
    "cobalt",
    "dune",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kelp",
    "lotus",
    "marble",
    "nectar",
    "onyx",
    "pepper",
    "quartz",
    "raven",
    "saffron",
    "tundra",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def _answer_started(output: Any) -> bool:
    messages = output[0] if isinstance(output, list | tuple) and output else []
    return bool(messages) and messages[-1]["role"] == "assistant" and bool(_text(messages[-1]["content"]).strip())


def ttft(home: Path, repeats: int, answer_tokens: int) -> dict[str, Any]:
    from gradio_client import Client

    from assistant.answer import Token, ask
    from assistant.app import launch
    from assistant.config import AppConfig, AssistantConfig
    from assistant.settings import Settings
    from assistant.workspace import Workspace
    from ingest.config import IngestConfig

    port = _free_port()
    config = AssistantConfig(answer_tokens=answer_tokens)
    ws = Workspace(Settings(ingest=IngestConfig(home=str(home)), assistant=config, app=AppConfig(port=port)))
    ws.base_model()
    ws.retriever()
    app = launch(ws, block=False, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    direct: list[float] = []
    api: list[float] = []
    try:
        client.predict(QUESTIONS[0], "RAG", "none", api_name="/chat")  # warm both paths once
        for n in range(repeats):
            question = QUESTIONS[n % len(QUESTIONS)]
            # each path starts from an empty prefix cache: the second would otherwise reuse the whole prompt
            ws.model("none")._weights.prefix.clear()
            started = time.perf_counter()
            events = ask(question, ws.model("none"), ws.retriever(), k=config.k, answer_tokens=answer_tokens)
            for event in events:
                if isinstance(event, Token) and len(direct) == n:
                    direct.append(time.perf_counter() - started)

            client.reset_session()
            ws.model("none")._weights.prefix.clear()
            started = time.perf_counter()
            job = client.submit(question, "RAG", "none", api_name="/chat")
            for output in job:
                if _answer_started(output) and len(api) == n:
                    api.append(time.perf_counter() - started)
            # (read to the end, so no generation overlaps the next direct run)
    finally:
        app.close()
    d, a = statistics.median(direct), statistics.median(api)
    paired = statistics.median(y - x for x, y in zip(direct, api, strict=True))
    return {
        "direct_ms": round(d * 1000, 1),
        "api_ms": round(a * 1000, 1),
        "overhead_ms": round((a - d) * 1000, 1),
        "paired_overhead_ms": round(paired * 1000, 1),  # median of (API - direct) over the same question
        "target_met": a <= d + 0.150 and paired <= 0.150,
        "direct_runs_ms": [round(x * 1000) for x in direct],
        "api_runs_ms": [round(x * 1000) for x in api],
    }


def _all_at_once(one: Any, count: int) -> float:
    """Run ``one(n)`` for n < ``count`` in as many threads at once; the seconds until the last ends."""
    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sessions(home: Path, count: int, answer_tokens: int) -> dict[str, Any]:
    from gradio_client import Client

    docs = home.parent / "bench-docs"
    docs.mkdir(exist_ok=True)
    for n, word in enumerate(WORDS[:count]):
        (docs / f"project-{n:02d}.md").write_text(
            f"# Project {n:02d}\n\nThe code word of project {n:02d} is {word.upper()}. "
            f"Project {n:02d} is run by team {word} and ships in week {n + 10}.\n"
        )
    env = {**os.environ, "RAGTUNE_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "assistant", "ingest", str(docs)], env=env, check=True, capture_output=True)
    port = _free_port()
    log = home / "app.log"
    command = [
        sys.executable,
        "-m",
        "assistant",
        "chat",
        "--port",
        str(port),
        "--set",
        f"answer_tokens={answer_tokens}",
    ]
    server = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        while "serving on" not in log.read_text():
            if server.poll() is not None:
                raise SystemExit(log.read_text())
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/"
        Client(url, verbose=False).predict(QUESTIONS[0], "RAG", "none", api_name="/chat")  # warm-up
        rss = {"after_warmup": round(_rss_mib(server.pid))}
        clients = [Client(url, verbose=False) for _ in range(count)]
        results: dict[str, Any] = {}
        asked: dict[int, list[str]] = {n: [] for n in range(count)}
        for round_name, template in (
            ("first", "What is the code word of project {n:02d}?"),
            ("follow_up", "And which team runs project {n:02d}?"),
        ):
            latencies: list[float] = [0.0] * count
            outputs: list[Any] = [None] * count
            errors: list[str] = []

            def one(
                n: int,
                template: str = template,
                latencies: list[float] = latencies,
                outputs: list[Any] = outputs,
                errors: list[str] = errors,
            ) -> None:
                question = template.format(n=n)
                asked[n].append(question)
                started = time.perf_counter()
                try:
                    outputs[n] = clients[n].predict(question, "RAG", "none", api_name="/chat")
                except Exception as e:  # reported, not raised: every session is counted
                    errors.append(f"session {n}: {type(e).__name__}: {e}")
                latencies[n] = time.perf_counter() - started

            wall = _all_at_once(one, count)
            crossed, wrong_top = 0, 0
            answered = 0
            for n, output in enumerate(outputs):
                if output is None:
                    continue
                messages = output[0]
                users = [_text(m["content"]) for m in messages if m["role"] == "user"]
                answer = _text(messages[-1]["content"])
                answered += bool(answer.strip()) and "<details" in answer
                crossed += users != asked[n]
                if round_name == "first":
                    first_source = answer.split('<details class="source source-1"><summary>', 1)[-1].split("·", 1)[0]
                    wrong_top += f"project-{n:02d}.md" not in first_source
            ordered = sorted(latencies)
            results[round_name] = {
                "answered": answered,
                "errors": errors[:3],
                "sessions_with_foreign_history": crossed,
                "top_source_not_own_document": wrong_top if round_name == "first" else None,
                "p50_s": round(statistics.median(ordered), 2),
                "p95_s": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 2),
                "wall_s": round(wall, 1),
            }
            rss[f"after_{round_name}"] = round(_rss_mib(server.pid))
        results["rss_mib"] = rss
        results["store"] = _kept(home, asked)
        return results
    finally:
        server.terminate()
        server.wait(30)


def _kept(home: Path, asked: dict[int, list[str]]) -> dict[str, Any]:
    """What the app's conversation store holds after the rounds, against what each session asked.

    Conversations that asked about no project (the warm-up, the TTFT runs over the same home) are left out.
    """
    from assistant.conversations import CONVERSATIONS_FILE, Conversations

    store = Conversations(home / CONVERSATIONS_FILE)
    kept = []
    for cid, _title in store.titles(""):
        questions = [m.content for m in store.get("", cid).messages if m.role == "user"]
        if any("project" in q for q in questions):
            kept.append(questions)
    lost = sum(1 for questions in asked.values() if kept.count(questions) != 1)
    mixed = sum(1 for questions in kept if questions not in asked.values())
    return {"session_conversations": len(kept), "lost": lost, "mixed_or_extra": mixed}


def store(home: Path, count: int, turns: int) -> dict[str, Any]:
    """``count`` threads each keeping ``turns`` turns in the conversation store at once; then read back."""
    from assistant.conversations import Conversations, Message

    kept = Conversations(home / "bench-conversations.sqlite")
    ids: list[str] = [""] * count
    errors: list[str] = []

    def one(n: int) -> None:
        try:
            user = f"user-{n:02d}"
            ids[n] = kept.create(user)
            for t in range(turns):
                question = f"session {n:02d} question {t}"
                kept.append(
                    user, ids[n], [Message("user", question, question), Message("assistant", f"answer {n}.{t}")]
                )
        except Exception as e:  # reported, not raised
            errors.append(f"session {n}: {type(e).__name__}: {e}")

    wall = _all_at_once(one, count)
    wrong = 0
    for n in range(count):
        user = f"user-{n:02d}"
        messages = kept.get(user, ids[n]).messages if ids[n] else []
        want = [c for t in range(turns) for c in (f"session {n:02d} question {t}", f"answer {n}.{t}")]
        wrong += [m.content for m in messages] != want
        wrong += len(kept.titles(user)) != 1  # no other user's conversation in this user's list
    return {
        "sessions": count,
        "turns": turns,
        "messages": sum(len(kept.get(f"user-{n:02d}", ids[n]).messages) for n in range(count) if ids[n]),
        "sessions_lost_or_mixed": wrong,
        "errors": errors[:3],
        "turn_writes_per_s": round(count * turns / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="all", choices=["ttft", "sessions", "store", "all"])
    parser.add_argument("--turns", type=int, default=10, help="turns per session kept in the store (store)")
    parser.add_argument("--repeats", type=int, default=7, help="TTFT runs of each path")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent sessions (at most 20)")
    parser.add_argument("--tokens", type=int, default=32, help="answer tokens")
    parser.add_argument("--models", help="a models/ folder with the converted bundled model, to skip conversion")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from ingest import IngestConfig
    from ingest.pipeline import SAMPLE_CORPUS, ingest

    report: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        if args.models:
            import shutil

            shutil.copytree(args.models, home / "models")
        ingest([SAMPLE_CORPUS], IngestConfig(home=str(home)), progress=False)
        if args.which in ("ttft", "all"):
            report["ttft"] = ttft(home, args.repeats, args.tokens)
            print(json.dumps(report["ttft"]), flush=True)
        if args.which in ("sessions", "all"):
            report["sessions"] = sessions(home, min(args.sessions, len(WORDS)), args.tokens)
        if args.which in ("store", "all"):
            report["store"] = store(home, args.sessions, args.turns)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
