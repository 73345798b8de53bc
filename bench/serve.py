"""``ragtune serve``'s overhead: streamed tokens/s and time to first token, through the API vs directly.

Sets up a data home with the sample corpus and the bundled models, serves the API
in this process (uvicorn on loopback, the same loaded model) and, alternating,
``--repeats`` times each:

model (``base``): the question as one user message
  - direct: ``model.stream()`` on the served model object;
  - API: the same messages streamed through ``/v1/chat/completions`` by the ``openai``
    package, which is exactly what the ``openai`` backend does.
rag (``base:rag``): a question about the sample corpus
  - direct: ``ask()`` on the server's own retriever and model;
  - API: the same question through ``base:rag``.

Time to first token runs from the call to the first piece of answer text; tokens/s
counts the answer's tokens (the model's tokenizer) over the time after the first
one. Greedy decoding, so both paths generate the same text (checked). Prints
medians and the API/direct ratios; the target is at most 10% slower.

Run:  python bench/serve.py [--repeats 5] [--tokens 64] [--models DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

QUESTIONS = [
    "What does error E116 mean and how is it fixed?",
    "How long is the warranty?",
    "How do I pair the battery with the app?",
    "How do I update the firmware?",
]


def _timed(pieces: Iterator[str], count: Callable[[str], int]) -> tuple[float, float, str]:
    """(time to first token s, tokens/s after it, text) of one streamed answer."""
    started = time.perf_counter()
    first = 0.0
    parts = []
    for piece in pieces:
        if piece and not first:
            first = time.perf_counter()
        parts.append(piece)
    done = time.perf_counter()
    text = "".join(parts)
    tokens = count(text)
    return first - started, (tokens - 1) / (done - first) if done > first and tokens > 1 else 0.0, text


def _api_pieces(client: Any, **request: Any) -> Iterator[str]:
    for chunk in client.chat.completions.create(stream=True, **request):
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def _summary(direct: list[tuple[float, float, str]], api: list[tuple[float, float, str]]) -> dict[str, Any]:
    d_ttft, a_ttft = statistics.median(x[0] for x in direct), statistics.median(x[0] for x in api)
    d_rate, a_rate = statistics.median(x[1] for x in direct), statistics.median(x[1] for x in api)
    return {
        "direct_ttft_ms": round(d_ttft * 1000, 1),
        "api_ttft_ms": round(a_ttft * 1000, 1),
        "ttft_ratio": round(a_ttft / d_ttft, 3),
        "direct_tokens_per_s": round(d_rate, 2),
        "api_tokens_per_s": round(a_rate, 2),
        "throughput_ratio": round(a_rate / d_rate, 3),
        "target_met": a_rate >= 0.9 * d_rate and a_ttft <= 1.1 * d_ttft,
        "same_text": all(x[2] == y[2] for x, y in zip(direct, api, strict=True)),
        "direct_runs": [(round(x[0] * 1000), round(x[1], 1)) for x in direct],
        "api_runs": [(round(x[0] * 1000), round(x[1], 1)) for x in api],
    }


def run(home: Path, repeats: int, tokens: int) -> dict[str, Any]:
    import openai

    from assistant.answer import ask
    from assistant.api import Serving, create_api
    from assistant.config import AssistantConfig
    from assistant.events import Token
    from assistant.settings import Settings
    from assistant.workspace import Workspace
    from ingest.config import IngestConfig

    config = AssistantConfig(answer_tokens=tokens)
    ws = Workspace(Settings(ingest=IngestConfig(home=str(home)), assistant=config))
    model = ws.model("none")
    retriever = ws.retriever()
    serving = Serving(create_api(ws)).start()
    client = openai.OpenAI(base_url=serving.url, api_key="none", max_retries=0)
    out: dict[str, Any] = {}
    try:
        for mode in ("model", "rag"):
            direct: list[tuple[float, float, str]] = []
            api: list[tuple[float, float, str]] = []
            name = "base" if mode == "model" else "base:rag"
            for n in range(repeats + 1):  # the first round warms both paths and is not counted
                question = QUESTIONS[n % len(QUESTIONS)]
                messages = [{"role": "user", "content": question}]
                if mode == "model":
                    pieces: Iterator[str] = model.stream(messages, max_new_tokens=tokens)
                else:
                    events = ask(question, model, retriever, k=config.k, answer_tokens=tokens)
                    pieces = (e.text for e in events if isinstance(e, Token))
                mine = _timed(pieces, model.count_text)
                theirs = _timed(_api_pieces(client, model=name, messages=messages, max_tokens=tokens), model.count_text)
                if n:
                    direct.append(mine)
                    api.append(theirs)
            out[mode] = _summary(direct, api)
            print(json.dumps({mode: out[mode]}), flush=True)
    finally:
        serving.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed answers of each path and mode")
    parser.add_argument("--tokens", type=int, default=64, help="answer tokens")
    parser.add_argument("--models", help="a models/ folder with the converted bundled model, to skip conversion")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from ingest import IngestConfig
    from ingest.pipeline import SAMPLE_CORPUS, ingest

    report: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        if args.models:
            import shutil

            shutil.copytree(args.models, home / "models")
        ingest([SAMPLE_CORPUS], IngestConfig(home=str(home)), progress=False)
        report.update(run(home, args.repeats, args.tokens))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
