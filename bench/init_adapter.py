"""A domain adapter started from the starter against one started from fresh weights, on the same data.

In one data home: ``ragtune ingest`` of the documents (default: the sample corpus),
``ragtune dataset build`` with the default settings, then ``ragtune finetune`` twice
with the default recipe, ``init_adapter = starter`` and ``init_adapter = none``.
Both adapters, the starter alone and the base model are then scored in one process:

- the dataset's test split, answered as ``ragtune ask`` answers (retrieval over the
  collection, the configured answer length, loop stop and citation check): EM, F1,
  cited answers, citation precision, loop rate;
- the tool eval (``assistant/evals/tools.jsonl``, 63 prompts): right tool, answer
  correct, and by category.

Run:  python bench/init_adapter.py --home DIR [--docs PATH] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ADAPTERS = {"from-starter": "starter", "from-scratch": "none"}  # name -> init_adapter


def ragtune(home: Path, *args: str) -> None:
    """Run one ``ragtune`` command in the bench data home; stop on failure."""
    print(f"$ ragtune {' '.join(args)}", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGTUNE_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "assistant", *args], check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=".ragtune-bench-init", help="data home (the model is converted there once)")
    parser.add_argument("--docs", help="documents of the domain (default: the sample corpus)")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps of each run (0: the recipe's epochs)")
    parser.add_argument("--skip-training", action="store_true", help="score adapters trained by an earlier run")
    parser.add_argument("--out", help="also write the summary as JSON to this file")
    args = parser.parse_args()

    from assistant.evaluate import evaluate_answers, load_split
    from assistant.settings import load_settings
    from assistant.tool_eval import evaluate_tools
    from assistant.workspace import Workspace

    home = Path(args.home).resolve()
    if not args.skip_training:
        ragtune(home, "ingest", *([args.docs] if args.docs else []))
        ragtune(home, "dataset", "build", "--no-feedback")
        for name, start in ADAPTERS.items():
            settings = [f"--set=finetune.init_adapter={start}", f"--set=finetune.steps={args.steps}"]
            ragtune(home, "finetune", "--name", name, "--no-eval", *settings)

    ws = Workspace(load_settings(None, (), None, home=str(home)))
    registry = ws.registry()
    folders = {"starter": registry.resolve("starter"), **{name: registry.resolve(name) for name in ADAPTERS}}
    training = {name: registry.get(name).metadata.get("metrics", {}) for name in ADAPTERS}
    model = ws.base_model()
    summary: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "training": {
            name: {k: m.get(k) for k in ("steps", "val_loss", "best_step", "tokens", "seconds")}
            for name, m in training.items()
        },
    }
    for name, m in training.items():
        print(
            f"{name}: {m.get('steps')} steps in {m.get('seconds', 0):.0f} s, best validation loss {m.get('val_loss')}"
        )

    split = load_split(home / "datasets" / "default")
    started = time.perf_counter()
    answers = evaluate_answers(split, ws.ingest, ws.config, model, ["rag"], others=folders, embedder=ws.embedder)
    print(f"\ntest split: {answers['questions']} questions, answers of up to {answers['answer_tokens']} tokens", end="")
    print(f" ({time.perf_counter() - started:.0f} s)")
    columns = ("em", "f1", "cited_rate", "citation_precision", "loop_rate", "answer_words")
    print(f"{'':<14}" + "".join(f"{c.replace('_rate', '').replace('citation_', 'cite-')[:10]:>11}" for c in columns))
    for arm, row in answers["arms"].items():
        label = arm.split("/")[0]
        print(f"{label:<14}" + "".join(f"{row[c] if row.get(c) is not None else float('nan'):>11.1f}" for c in columns))
    summary["test_split"] = {arm.split("/")[0]: row for arm, row in answers["arms"].items()}

    started = time.perf_counter()
    tools = evaluate_tools(ws.ingest, ws.config, model, others=folders, embedder=ws.embedder)
    print(f"\ntool eval: {tools['prompts']} prompts ({time.perf_counter() - started:.0f} s)")
    print(f"{'':<14}{'right tool':>11}{'answer':>8}   by category (right tool / answer correct)")
    for label, row in tools["variants"].items():
        parts = ", ".join(
            f"{c} {g['right_tool_rate']:.0f}/{g['answer_correct'] or 0:.0f}" for c, g in row["by_category"].items()
        )
        print(f"{label:<14}{row['right_tool_rate']:>11.1f}{row['answer_correct'] or 0:>8.1f}   {parts}")
    summary["tools"] = {
        label: {k: v for k, v in row.items() if k not in ("cases",)} for label, row in tools["variants"].items()
    }
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
