"""``ask`` streaming throughput against raw ``model.generate`` on the same prompt.

Loads the bundled chat model once, ingests the sample corpus into a temporary
data home, and for one RAG question builds the exact prompt ``ask`` sends. Then,
alternating, five times each:
- ours: ``ask()`` with the packed prompt (streamer thread, events, citations),
  tokens/s over its generation time;
- raw: ``model.generate`` on the same input ids, greedy, same max_new_tokens.
Both decode greedily, so they produce the same tokens. Prints the median tokens/s
of each and their ratio (target >= 0.9).

Run:  python bench/generate.py [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

QUESTION = "What does error E116 mean and how is it fixed?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128, help="max new tokens per answer")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each")
    args = parser.parse_args()

    import torch

    from assistant.answer import Answer, ask
    from assistant.backends import load_model
    from assistant.config import AssistantConfig
    from assistant.prompt import pack
    from assistant.retrieval import Retriever
    from ingest import IngestConfig, ingest
    from ingest.pipeline import SAMPLE_CORPUS

    with tempfile.TemporaryDirectory() as tmp:
        ingest_config = IngestConfig(home=tmp)
        ingest([SAMPLE_CORPUS], ingest_config, progress=False)
        config = AssistantConfig()
        retriever = Retriever(ingest_config)
        model = load_model(config, Path(tmp))
        hits = retriever.search(QUESTION, config.k).hits
        packed = pack(QUESTION, hits, [], model.count_tokens, model.context_window - args.tokens)
        inputs = model.tokenizer.apply_chat_template(
            packed.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ours, raw = [], []
        for _ in range(args.repeats):
            answer = next(
                e for e in ask(QUESTION, model, context=hits, answer_tokens=args.tokens) if isinstance(e, Answer)
            )
            ours.append(answer.completion_tokens / answer.timings["generation_s"])
            started = time.perf_counter()
            with torch.no_grad():
                out = model.model.generate(
                    **inputs, max_new_tokens=args.tokens, do_sample=False, pad_token_id=model.tokenizer.eos_token_id
                )
            new = out.shape[1] - inputs["input_ids"].shape[1]
            raw.append(new / (time.perf_counter() - started))
    ours_tps, raw_tps = statistics.median(ours), statistics.median(raw)
    print(f"prompt {packed.prompt_tokens} tokens, answer up to {args.tokens} tokens, device {model.device}")
    print(f"raw model.generate: {raw_tps:7.1f} tokens/s")
    print(f"ask (streamed):     {ours_tps:7.1f} tokens/s  ratio {ours_tps / raw_tps:.2f} (target >= 0.9)")
    print(
        json.dumps(
            {
                "bench": "generate",
                "date": time.strftime("%Y-%m-%d"),
                "device": model.device,
                "machine": f"{platform.machine()} python {sys.version.split()[0]}",
                "prompt_tokens": packed.prompt_tokens,
                "raw_tps": round(raw_tps, 2),
                "ask_tps": round(ours_tps, 2),
                "ratio": round(ours_tps / raw_tps, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
