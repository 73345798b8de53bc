"""Rebuild the starter adapter shipped in ``finetune/starter/`` from scratch, with ragtune's own pipeline.

Run it as ``make starter`` (or ``python scripts/build_starter.py --data ../shared/data``).
It needs the evaluation data folder (SQuAD v1.1 dev half, PubMedQA PQA-L pool) and
the bundled SmolLM2-135M-Instruct; a CUDA GPU is used when there is one (bf16),
otherwise the CPU (bf16 autocast where the CPU has it).

1. Grounded examples (question, short answer, the passage that holds it) from the
   SQuAD articles not held out and from the first PubMedQA questions by PMID; the
   held-out articles and questions are written as evaluation files next to them.
2. ``ragtune ingest`` of the sample corpus into a build data home (synthetic
   questions and tool transcripts are made from it); with ``--articles`` the SQuAD
   rows' paragraphs too, so their questions also become document-search transcripts.
3. ``ragtune dataset build --examples rows.jsonl``: RAFT context examples (the
   passage among distractors, the answer cites it), abstentions ("The documents
   do not say.") when only distractors are shown, and tool transcripts from the
   tool registry (arithmetic, dates, search, listing, and chat that needs no tool).
4. ``ragtune finetune``, from fresh weights (``init_adapter = none``); the adapter is copied into the package
   with its weights in bf16 (rank 16 on all linear layers: under 10 MB) and its
   recipe, data and licences in ``adapter.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILT = "starter-build"  # the name it is trained under ("starter" is the shipped one's)
HELD_OUT = ("1973_oil_crisis", "Black_Death", "Construction", "Harvard_University", "Pharmacy")
LICENCES = {
    "SQuAD v1.1 dev half (Rajpurkar et al. 2016)": "CC BY-SA 4.0",
    "PubMedQA PQA-L pool (Jin et al. 2019)": "MIT",
    "ragtune sample corpus": "Apache-2.0",
    "tool transcripts from ragtune's tool registry": "Apache-2.0",
}
TRAINING = {  # the dataset build and training settings; recorded in adapter.json
    "synthetic": "extractive",
    "questions_per_chunk": 1,
    "closed_book": 0.0,
    "distractors": 3,
    "golden_share": 0.75,
    "tool_examples": 200,
    "max_tokens": 1024,
    "val_share": 0.05,
    "test_share": 0.05,
    "lora_r": 16,
    "lora_alpha": 32,
    "epochs": 1.25,
    "learning_rate": 4e-4,
    "batch_size": 8,
    "batch_tokens": 2048,
    "eval_every": 50,
    "patience": 0,
    "precision": "bf16",
    "init_adapter": "none",
}


def squad_rows(path: Path, count: int, rng: random.Random) -> tuple[list[dict[str, str]], dict[str, object]]:
    """Grounded rows from the articles not held out (at most one question per paragraph), and the held-out file."""
    data = json.loads(path.read_text())
    rows: list[dict[str, str]] = []
    held: list[dict[str, object]] = []
    for article in data["data"]:
        if article["title"] in HELD_OUT:
            held.append(article)
            continue
        title = article["title"].replace("_", " ")
        for paragraph in article["paragraphs"]:
            qa = rng.choice(paragraph["qas"])
            rows.append(
                {
                    "question": qa["question"].strip(),
                    "answer": qa["answers"][0]["text"].strip(),
                    "context": paragraph["context"],
                    "source": f"{title}.txt",
                }
            )
    rng.shuffle(rows)
    return rows[:count], {"version": data.get("version", "1.1"), "data": held}


def pubmedqa_rows(path: Path, count: int, held_out: int) -> tuple[list[dict[str, str]], dict[str, object]]:
    """Grounded rows (the decision, then the long answer) from the first PMIDs, and the last ``held_out`` as a file."""
    data = json.loads(path.read_text())
    pmids = sorted(data)
    rows = []
    for pmid in pmids[: len(pmids) - held_out][:count]:
        item = data[pmid]
        decision = str(item["final_decision"]).capitalize()
        rows.append(
            {
                "question": item["QUESTION"],
                "answer": f"{decision}. {item['LONG_ANSWER'].strip()}",
                "context": " ".join(item["CONTEXTS"]),
                "source": f"PMID {pmid}.txt",
            }
        )
    return rows, {pmid: data[pmid] for pmid in pmids[len(pmids) - held_out :]}


def ragtune(home: Path, *args: str) -> None:
    """Run one ``ragtune`` command in the build data home; stop on failure."""
    command = [sys.executable, "-m", "assistant", *args]
    print(f"$ RAGTUNE_HOME={home} ragtune", " ".join(args), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "RAGTUNE_HOME": str(home)})


def package(adapter: Path, out: Path, recipe: dict[str, object]) -> None:
    """Copy the trained adapter into ``out`` with bf16 weights and the recipe in ``adapter.json``, all or nothing."""
    import torch
    from safetensors.torch import load_file, save_file

    staging = out.with_name(out.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    weights = load_file(adapter / "adapter_model.safetensors")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}, staging / "adapter_model.safetensors")
    (staging / "adapter_model.safetensors").chmod(0o644)
    shutil.copy(adapter / "adapter_config.json", staging / "adapter_config.json")
    metadata = json.loads((adapter / "adapter.json").read_text())
    metadata["name"] = "starter"
    metadata["dataset"]["path"] = "build/starter-home/datasets/default (make starter)"
    metadata["recipe"] = recipe
    (staging / "adapter.json").write_text(json.dumps(metadata, indent=2) + "\n")
    for name in ("README.md",):
        if (out / name).exists():
            shutil.copy(out / name, staging / name)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"starter adapter written to {out} ({size / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="evaluation data folder")
    parser.add_argument("--home", type=Path, default=ROOT / "build" / "starter-home", help="build data home")
    parser.add_argument("--out", type=Path, default=ROOT / "finetune" / "starter", help="where the adapter goes")
    parser.add_argument("--squad", type=int, default=500, help="SQuAD grounded examples")
    parser.add_argument("--pubmedqa", type=int, default=60, help="PubMedQA grounded examples")
    parser.add_argument("--held-out", type=int, default=100, help="PubMedQA questions kept for evaluation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the row choice, the build and the training")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps (0: as many as the epochs setting gives)")
    parser.add_argument(
        "--articles",
        action="store_true",
        help="also ingest the SQuAD rows' paragraphs, so their questions become document-search transcripts "
        "(searches more, but also calls tools for chat; not the shipped recipe)",
    )
    parser.add_argument("--dataset-only", action="store_true", help="stop after building the dataset (to read it)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    home = args.home.resolve()
    if home.exists():
        shutil.rmtree(home)
    (home / "eval").mkdir(parents=True)
    squad, squad_held = squad_rows(args.data / "squad-dev" / "squad-v1.1-dev-half.json", args.squad, rng)
    pool = args.data / "pubmedqa-dev" / "pqal-train-pool.json"
    pubmed, pubmed_held = pubmedqa_rows(pool, args.pubmedqa, args.held_out)
    rows = home / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in [*squad, *pubmed]))
    (home / "eval" / "squad-heldout.json").write_text(json.dumps(squad_held))
    (home / "eval" / "pubmedqa-heldout.json").write_text(json.dumps(pubmed_held))
    print(f"{len(squad)} SQuAD and {len(pubmed)} PubMedQA rows; held out: {', '.join(HELD_OUT)}, {args.held_out} PMIDs")

    settings = [f"--set=finetune.{k}={v}" for k, v in {**TRAINING, "seed": args.seed, "steps": args.steps}.items()]
    documents = [str(ROOT / "ingest" / "sample")]
    if args.articles:  # the rows' passages are documents too: their questions become document-search tasks
        articles = home / "articles"
        articles.mkdir()
        by_source: dict[str, list[str]] = {}
        for row in squad:
            by_source.setdefault(row["source"], []).append(row["context"])
        for source, paragraphs in by_source.items():
            (articles / source).write_text("\n\n".join(paragraphs) + "\n")
        documents.append(str(articles))
    ragtune(home, "ingest", *documents)
    ragtune(home, "dataset", "build", "--examples", str(rows), "--no-feedback", *settings)
    if args.dataset_only:
        print(f"dataset in {home / 'datasets' / 'default'}; no adapter trained")
        return
    ragtune(home, "finetune", "--name", BUILT, "--no-eval", *settings)
    recipe = {
        "command": "make starter",
        "data": {
            "squad": {"examples": len(squad), "held_out_articles": list(HELD_OUT)},
            "pubmedqa": {"examples": len(pubmed), "held_out": f"the last {args.held_out} PMIDs in sorted order"},
            "rows_sha256": hashlib.sha256(rows.read_bytes()).hexdigest(),
        },
        "licences": LICENCES,
        "settings": {**TRAINING, "seed": args.seed, "steps": args.steps},
    }
    package(home / "adapters" / BUILT, args.out.resolve(), recipe)


if __name__ == "__main__":
    main()
