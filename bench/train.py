"""Training throughput and memory: ragtune's LoRA recipe vs a plain HF ``Trainer`` + peft baseline, and QLoRA vs bf16.

Both arms run in this one process on the same random-init model, the same chats
and the same number of examples. The baseline is what most tutorials do: HF
``Trainer`` with a peft LoRA model and every example padded to ``--max-tokens``.
The recipe groups batches by length and only projects the assistant's positions
onto the vocabulary. Printed: real (non-pad) tokens/s of each, their ratio, and
peak GPU memory of each; with ``--qlora``, peak memory of QLoRA vs bf16 LoRA.

    python bench/train.py --size 1b --examples 512 --qlora     # on a CUDA GPU
    python bench/train.py --size tiny --examples 32            # a CPU smoke run of the script
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

SIZES = {  # Llama-architecture configs; the 1B one is shaped like Llama 3.2 1B
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2},
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32},
}
WORDS = [
    "battery",
    "warranty",
    "install",
    "firmware",
    "error",
    "code",
    "capacity",
    "power",
    "cabinet",
    "inverter",
    "reserve",
    "schedule",
    "grid",
    "outage",
    "charge",
    "discharge",
    "meter",
    "gateway",
    "solar",
    "panel",
    "voltage",
    "current",
    "temperature",
    "mode",
    "light",
    "ring",
    "app",
]


def build_model(folder: Path, size: str, tokenizer_from: str) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    shape = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=max(1, shape["num_attention_heads"] // 4),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shape,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def chats(count: int, max_words: int, seed: int = 0) -> list[dict[str, Any]]:
    """Chats of mixed length, as real data is: a long context and a short answer."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        context = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, max_words)))
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
        rows.append({"messages": [{"role": "user", "content": context}, {"role": "assistant", "content": answer}]})
    return rows


def peak_memory() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def reset_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_recipe(model: str, folder: Path, args: argparse.Namespace, quantize: str = "") -> dict[str, Any]:
    from finetune.config import FinetuneConfig
    from finetune.train import finetune

    reset_memory()
    config = FinetuneConfig(
        name=f"bench{quantize}",
        batch_size=args.batch_size,
        batch_tokens=args.batch_size * args.max_tokens,
        max_tokens=args.max_tokens,
        epochs=1,
        eval_every=10**6,
        patience=0,
        lora_r=16,
        lora_alpha=32,
        quantize=quantize,
        device=args.device,
    )
    home = folder / f"home{quantize}"
    result = finetune(config, model, home, folder / "data", progress=False)
    return {
        "tokens": result.tokens,
        "seconds": result.seconds,
        "tokens_per_s": result.tokens / result.seconds,
        "peak_gib": peak_memory(),
    }


def run_baseline(model: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    reset_memory()
    tokenizer = AutoTokenizer.from_pretrained(model)
    cuda = args.device != "cpu" and torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    base = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(base, lora)
    features, real_tokens = [], 0
    for row in rows:
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        encoded = tokenizer(
            text, max_length=args.max_tokens, truncation=True, padding="max_length", add_special_tokens=False
        )
        real_tokens += sum(encoded["attention_mask"])
        labels = [t if m else -100 for t, m in zip(encoded["input_ids"], encoded["attention_mask"])]
        features.append({**encoded, "labels": labels})
    training = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        learning_rate=3e-4,
        bf16=cuda,
        use_cpu=not cuda,
        logging_steps=10**6,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    trainer = Trainer(model=peft_model, args=training, train_dataset=features)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"tokens": real_tokens, "seconds": seconds, "tokens_per_s": real_tokens / seconds, "peak_gib": peak_memory()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="1b", help="model shape (random init)")
    parser.add_argument("--tokenizer", default="", help="tokenizer folder (default: the bundled SmolLM2's)")
    parser.add_argument("--examples", type=int, default=512, help="training chats (one epoch)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="longest example; the baseline pads to it")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per batch, both arms")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--qlora", action="store_true", help="also train with QLoRA and compare its peak memory")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    from finetune.base_model import resolve_model_path
    from ingest.config import resolve_home

    tokenizer = args.tokenizer or resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct", resolve_home())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_model(folder / "model", args.size, tokenizer)
        rows = chats(args.examples, max_words=args.max_tokens // 2)
        (folder / "data").mkdir()
        (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        results = {"baseline": run_baseline(model, rows, args), "ragtune": run_recipe(model, folder, args)}
        if args.qlora:
            results["ragtune_qlora"] = run_recipe(model, folder, args, quantize="4bit")
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    report = {"size": args.size, "examples": args.examples, "max_tokens": args.max_tokens, "device": device, **results}
    ours, theirs = results["ragtune"], results["baseline"]
    report["speedup"] = ours["tokens_per_s"] / theirs["tokens_per_s"]
    report["memory_ratio"] = ours["peak_gib"] / theirs["peak_gib"] if theirs["peak_gib"] == theirs["peak_gib"] else None
    for name, row in results.items():
        speed, seconds, peak = row["tokens_per_s"], row["seconds"], row["peak_gib"]
        print(f"{name:<14} {speed:>10.0f} tokens/s  {seconds:>8.1f} s  peak {peak:.2f} GiB")
    print(f"speed-up (ragtune / baseline tokens/s): {report['speedup']:.2f}x")
    if report["memory_ratio"] is not None:
        print(f"peak memory ragtune / baseline: {report['memory_ratio']:.2f}")
    if "ragtune_qlora" in results:
        report["qlora_memory_ratio"] = results["ragtune_qlora"]["peak_gib"] / ours["peak_gib"]
        print(f"peak memory QLoRA / bf16 LoRA: {report['qlora_memory_ratio']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
