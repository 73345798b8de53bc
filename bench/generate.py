"""``ask`` on the chosen CPU dtype against raw fp32 ``model.generate``, with the machine's bandwidth bound.

Loads the bundled chat model twice, as the assistant had it (fp32, no prefix
cache: the baseline) and as configured now (``--cpu-dtype``, default auto: bf16
where the CPU has bf16 in hardware; prefix cache on), ingests the sample corpus
into a temporary data home and builds the exact RAG prompt ``ask`` sends for
one question. Then, alternating, ``--repeats`` times each:
- raw: fp32 ``model.generate`` on those input ids, greedy, ``--tokens`` new tokens
  (tokens/s includes the prefill), and its time to first token (one new token);
- ask fp32: ``ask()`` on the fp32 model (the assistant as it was): tokens/s and first token;
- ask: ``ask()`` on the chosen model with an empty prefix cache (a first turn):
  tokens/s over its generation time, and its time to first token;
- follow-up: ``ask()`` of another question on the same sources right after, so
  the system prompt and the sources come from the prefix cache: time to first token.
Prints medians, the ratios against raw fp32 and against ask fp32 (targets:
tokens/s >= 2.0x, first token <= 0.6x) and whether ask's greedy answer is the raw
fp32 one token for token. On a loaded machine raw ``generate`` in the main thread
has measured far slower than the same fp32 model in ``ask``'s generation thread,
so the ratio against ask fp32 is the conservative one.

Physical bound: a large tensor copy measures this machine's memory bandwidth;
decoding one token reads every weight once (plus the KV cache), so
bandwidth / bytes per token is the most tokens/s any implementation could decode.

``--squad N`` also answers N SQuAD dev questions (gold paragraph as the only
source) with both models and prints identical answers and token F1 of each.

Run:  python bench/generate.py [--tokens 64] [--repeats 3] [--squad 0] [--cpu-dtype auto]
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
from typing import Any

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

QUESTION = "What does error E116 mean and how is it fixed?"
FOLLOW_UP = "Which page explains error E116?"
SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-dev" / "squad-v1.1-dev-half.json"


def bandwidth_gb_s(megabytes: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth in GB/s: the best of ``repeats`` copies of a large tensor (bytes read + written)."""
    import torch

    src = torch.ones(megabytes << 20, dtype=torch.uint8)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - started)
    return 2 * src.numel() / best / 1e9


def bytes_per_token(model: Any, context_tokens: int) -> int:
    """Bytes one decoding step reads: every weight once (tied ones once) and the KV cache of ``context_tokens``."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    config = model.config
    heads = getattr(config, "num_key_value_heads", config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = next(model.parameters()).element_size()
    kv = 2 * config.num_hidden_layers * heads * head_dim * context_tokens * element
    return int(weights + kv)


def time_to_first_piece(model: Any, messages: list[dict[str, Any]], tokens: int) -> tuple[float, float, int]:
    """(seconds to the first streamed piece, seconds in all, pieces) of ``model.stream``."""
    started = time.perf_counter()
    first = 0.0
    pieces = 0
    for _ in model.stream(messages, max_new_tokens=tokens):
        if not pieces:
            first = time.perf_counter() - started
        pieces += 1
    return first, time.perf_counter() - started, pieces


def squad(baseline: Any, ours: Any, count: int, tokens: int) -> dict[str, Any]:
    """Answer ``count`` SQuAD questions with both models on their gold paragraph: same answers, and F1 of each."""
    from assistant.answer import Answer, ask
    from assistant.retrieval import Hit
    from finetune.metrics import f1

    data = json.loads(SQUAD.read_text())["data"]
    items = [(a["title"], p["context"], q) for a in data for p in a["paragraphs"] for q in p["qas"]]
    step = max(1, len(items) // count)
    scores: dict[str, list[float]] = {"fp32": [], "ours": []}
    same = 0
    for n, (title, context, qa) in enumerate(items[::step][:count]):
        hit = Hit(f"squad{n}", context, {"source": title}, 1.0, 1.0, 1, 1)
        texts = []
        for label, model in (("fp32", baseline), ("ours", ours)):
            events = ask(qa["question"], model, context=[hit], answer_tokens=tokens, loop_guard=False)
            text = next(e for e in events if isinstance(e, Answer)).text
            scores[label].append(f1(text, [a["text"] for a in qa["answers"]]))
            texts.append(text)
        same += texts[0] == texts[1]
        print(
            f"  squad {n + 1}/{count}: identical {same}/{n + 1}, F1 fp32 {100 * statistics.mean(scores['fp32']):.1f} "
            f"ours {100 * statistics.mean(scores['ours']):.1f}",
            file=sys.stderr,
            flush=True,
        )
    done = len(scores["fp32"])
    return {
        "questions": done,
        "identical": same,
        "f1_fp32": round(100 * statistics.mean(scores["fp32"]), 2),
        "f1_ours": round(100 * statistics.mean(scores["ours"]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per answer")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--squad", type=int, default=0, help="also compare answers on this many SQuAD questions")
    parser.add_argument("--cpu-dtype", default="auto", help="the chosen model's cpu_dtype: auto, fp32 or bf16")
    args = parser.parse_args()

    import torch

    from assistant.answer import Answer, ask
    from assistant.config import AssistantConfig
    from assistant.model import LocalModel
    from assistant.prompt import pack
    from assistant.retrieval import Retriever
    from ingest import IngestConfig, ingest
    from ingest.pipeline import SAMPLE_CORPUS

    with tempfile.TemporaryDirectory() as tmp:
        ingest_config = IngestConfig(home=tmp)
        ingest([SAMPLE_CORPUS], ingest_config, progress=False)
        config = AssistantConfig(cpu_dtype=args.cpu_dtype)
        home = Path(tmp)
        device, window = config.device, config.context_window
        baseline = LocalModel(config.model, home, "", device, window, cpu_dtype="fp32", prefix_cache=False)
        ours = LocalModel(config.model, home, "", device, window, cpu_dtype=config.cpu_dtype)
        hits = Retriever(ingest_config).search(QUESTION, config.k).hits
        packed = pack(QUESTION, hits, [], ours.count_tokens, ours.context_window - args.tokens)
        inputs = baseline.tokenizer.apply_chat_template(
            packed.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        inputs = {k: v.to(baseline.device) for k, v in inputs.items()}
        prompt = inputs["input_ids"].shape[1]
        greedy = {"do_sample": False, "pad_token_id": baseline.tokenizer.eos_token_id}

        def answer(model: LocalModel, question: str) -> Answer:
            events = ask(question, model, context=hits, answer_tokens=args.tokens, loop_guard=False)
            return next(e for e in events if isinstance(e, Answer))

        # Untimed warm-up of both, so first-call costs (oneDNN kernels, allocations) count in neither.
        with torch.no_grad():
            baseline.model.generate(**inputs, max_new_tokens=2, **greedy)
        answer(ours, QUESTION)

        raw, raw_first, ours_tps, ours_first, ours_decode, follow_first = [], [], [], [], [], []
        old_tps, old_first = [], []
        identical = True
        for n in range(args.repeats):
            with torch.no_grad():
                started = time.perf_counter()
                baseline.model.generate(**inputs, max_new_tokens=1, **greedy)
                raw_first.append(time.perf_counter() - started)
                started = time.perf_counter()
                out = baseline.model.generate(**inputs, max_new_tokens=args.tokens, **greedy)
                raw.append((out.shape[1] - prompt) / (time.perf_counter() - started))
            raw_text = baseline.tokenizer.decode(out[0, prompt:], skip_special_tokens=True)

            result = answer(baseline, QUESTION)
            old_tps.append(result.completion_tokens / result.timings["generation_s"])
            old_first.append(result.timings["first_token_s"])

            ours._weights.prefix.clear()  # a first turn: nothing shared with an earlier prompt
            result = answer(ours, QUESTION)
            ours_tps.append(result.completion_tokens / result.timings["generation_s"])
            ours_first.append(result.timings["first_token_s"])
            decode_s = result.timings["generation_s"] - result.timings["first_token_s"]
            if result.completion_tokens > 1 and decode_s > 0:
                ours_decode.append((result.completion_tokens - 1) / decode_s)
            identical &= result.text.strip() == raw_text.strip()
            follow_first.append(answer(ours, FOLLOW_UP).timings["first_token_s"])
            print(
                f"  run {n + 1}: raw {raw[-1]:.1f} tok/s, first {raw_first[-1]:.2f} s | "
                f"ask fp32 {old_tps[-1]:.1f} tok/s, first {old_first[-1]:.2f} s | "
                f"ask {ours_tps[-1]:.1f} tok/s, first {ours_first[-1]:.2f} s, follow-up first {follow_first[-1]:.2f} s",
                file=sys.stderr,
                flush=True,
            )

        gb_s = bandwidth_gb_s()
        fp32_bytes = bytes_per_token(baseline.model, prompt)
        ours_bytes = bytes_per_token(ours.model, prompt)
        answers = squad(baseline, ours, args.squad, args.tokens) if args.squad else None

    raw_tps, ask_tps = statistics.median(raw), statistics.median(ours_tps)
    raw_ttft, ask_ttft, follow_ttft = map(statistics.median, (raw_first, ours_first, follow_first))
    old_tps_, old_ttft = statistics.median(old_tps), statistics.median(old_first)
    decode_tps = statistics.median(ours_decode) if ours_decode else 0.0
    bound_fp32, bound_ours = gb_s * 1e9 / fp32_bytes, gb_s * 1e9 / ours_bytes
    print(f"prompt {prompt} tokens, answer up to {args.tokens} tokens, device {ours.device}, ours {ours.dtype}")
    print(f"raw fp32 generate:  {raw_tps:7.2f} tokens/s   first token {raw_ttft:6.2f} s")
    print(f"ask (fp32):         {old_tps_:7.2f} tokens/s   first token {old_ttft:6.2f} s")
    print(
        f"ask ({ours.dtype}):         {ask_tps:7.2f} tokens/s   first token {ask_ttft:6.2f} s   "
        f"ratios {ask_tps / raw_tps:.2f}x (target >= 2.0) / {ask_ttft / raw_ttft:.2f}x (target <= 0.6)"
    )
    print(
        f"ask ({ours.dtype}) against ask (fp32): {ask_tps / old_tps_:.2f}x tokens/s, "
        f"{ask_ttft / old_ttft:.2f}x first token"
    )
    print(f"follow-up, prefix cached:        first token {follow_ttft:6.2f} s   ratio {follow_ttft / raw_ttft:.2f}x")
    print(f"greedy answer identical to raw fp32: {identical}")
    print(
        f"memory bandwidth {gb_s:.1f} GB/s: decode bound {bound_fp32:.1f} tokens/s fp32 "
        f"({fp32_bytes / 1e6:.0f} MB/token), {bound_ours:.1f} tokens/s {ours.dtype} ({ours_bytes / 1e6:.0f} MB/token); "
        f"ask decodes at {decode_tps:.1f} tokens/s = {decode_tps / bound_ours:.0%} of its bound"
    )
    if answers:
        print(
            f"SQuAD {answers['questions']} questions: identical answers {answers['identical']}, "
            f"F1 fp32 {answers['f1_fp32']:.2f}, {ours.dtype} {answers['f1_ours']:.2f}"
        )
    print(
        json.dumps(
            {
                "bench": "generate",
                "date": time.strftime("%Y-%m-%d"),
                "device": ours.device,
                "dtype": ours.dtype,
                "machine": f"{platform.machine()} python {sys.version.split()[0]} torch {torch.__version__}",
                "prompt_tokens": prompt,
                "raw_fp32_tps": round(raw_tps, 2),
                "ask_tps": round(ask_tps, 2),
                "tps_ratio": round(ask_tps / raw_tps, 3),
                "ask_fp32_tps": round(old_tps_, 2),
                "ask_fp32_first_s": round(old_ttft, 3),
                "tps_ratio_vs_ask_fp32": round(ask_tps / old_tps_, 3),
                "first_ratio_vs_ask_fp32": round(ask_ttft / old_ttft, 3),
                "raw_fp32_first_s": round(raw_ttft, 3),
                "ask_first_s": round(ask_ttft, 3),
                "first_ratio": round(ask_ttft / raw_ttft, 3),
                "follow_up_first_s": round(follow_ttft, 3),
                "identical": identical,
                "bandwidth_gb_s": round(gb_s, 1),
                "bound_tps": round(bound_ours, 1),
                "ask_decode_tps": round(decode_tps, 2),
                "squad": answers,
            }
        )
    )


if __name__ == "__main__":
    main()
