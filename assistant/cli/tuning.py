"""``ragtune dataset build``, ``ragtune finetune`` and ``ragtune adapters``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from assistant.cli.options import settings, workspace
from assistant.training import Evaluation, activate_adapter, rollback_adapter, train, vllm_command
from finetune.adapters import Registry


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``dataset build``, ``finetune`` and ``adapters`` to a ``ragtune`` parser."""
    d = sub.add_parser("dataset", help="training data from the documents and your examples")
    dsub = d.add_subparsers(dest="dataset_command", required=True, metavar="{build}")
    b = dsub.add_parser(
        "build",
        parents=[parent],
        help="write train/val/test JSONL and a report",
        description="Build chat-format training data: your example files (chat, alpaca or sharegpt), "
        "questions generated from the ingested chunks (closed-book and with retrieved context), "
        "and tool-use transcripts of the agent.",
    )
    b.add_argument("--examples", action="append", metavar="FILE", help="your own examples file (repeatable)")
    b.add_argument("--dataset", help="dataset name under HOME/datasets, or a folder (default: default)")
    b.add_argument("--collection", help="the collection whose chunks to use (default: documents)")
    b.add_argument("--no-feedback", action="store_true", help="leave out the chat's saved feedback")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    b.set_defaults(func=cmd_dataset_build)

    f = sub.add_parser(
        "finetune",
        parents=[parent],
        help="train a LoRA adapter on the built dataset, then evaluate it before/after",
        description="Train a LoRA (or DoRA, or QLoRA on CUDA) adapter for the assistant's model. The adapter is "
        "registered but not activated unless --activate is given. Runs under `accelerate launch` too.",
    )
    f.add_argument("--name", help="adapter name (default: finetune-DATE-TIME)")
    f.add_argument("--dataset", help="dataset name or folder (default: default)")
    f.add_argument("--collection", help="the collection the before/after RAG answers search (default: documents)")
    f.add_argument("--resume", metavar="NAME", help="continue an interrupted run from its last checkpoint")
    f.add_argument(
        "--activate",
        action="store_true",
        help="activate the adapter when training succeeds and it scores at least as well as the base model",
    )
    f.add_argument("--no-eval", action="store_true", help="skip the before/after evaluation")
    f.add_argument("--eval-tools", action="store_true", help="also run the tool-call eval, base and tuned (slow)")
    f.add_argument(
        "--estimate", action="store_true", help="only time a few steps and print how long the run would take here"
    )
    f.set_defaults(func=cmd_finetune)

    a = sub.add_parser("adapters", help="list, activate, roll back and remove trained adapters")
    asub = a.add_subparsers(dest="adapters_command", required=True, metavar="{list,activate,rollback,remove,vllm}")
    al = asub.add_parser("list", parents=[parent], help="every adapter with its metrics; * marks the active one")
    al.add_argument("--json", action="store_true", help="print the adapter.json of each")
    al.set_defaults(func=cmd_adapters_list)
    aa = asub.add_parser("activate", parents=[parent], help="make an adapter the one the assistant uses")
    aa.add_argument("adapter_name", metavar="name", help="adapter name, or none for the base model")
    aa.set_defaults(func=cmd_adapters_activate)
    ar = asub.add_parser("rollback", parents=[parent], help="re-activate the previously active adapter")
    ar.set_defaults(func=cmd_adapters_rollback)
    rm = asub.add_parser("remove", parents=[parent], help="delete an adapter that is not active")
    rm.add_argument("adapter_name", metavar="name", help="adapter name")
    rm.set_defaults(func=cmd_adapters_remove)
    av = asub.add_parser(
        "vllm",
        parents=[parent],
        help="print the vLLM command serving the base model with the active adapter",
        description="Print the `vllm serve` command for the base model plus the active adapter (--all: every "
        "adapter for this base model), and the [assistant] settings that point ragtune at it.",
    )
    av.add_argument("--all", action="store_true", help="serve every adapter for this base model, not only the active")
    av.add_argument("--port", type=int, default=8000, help="vLLM's port (default 8000)")
    av.set_defaults(func=cmd_adapters_vllm)


def cmd_dataset_build(args: argparse.Namespace) -> int:
    ws = workspace(args)
    built = ws.build_dataset(feedback=not args.no_feedback, progress=not args.json)
    if args.json:
        print(json.dumps({"dataset": str(built.folder), **built.report}, indent=2))
        return 0
    print(f"dataset {built.folder}")
    for line in built.lines(ws.tune.max_tokens):
        print(f"  {line}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    if args.estimate:
        print("\n".join(workspace(args).estimate_training().lines()))
        return 0
    s = settings(args)
    trained = train(
        s, resume=args.resume or "", activate=args.activate, evaluate=not args.no_eval, eval_tools=args.eval_tools
    )
    if trained is not None:  # None: another process of an `accelerate launch` / torchrun run; the main one reports
        print("\n".join(trained.lines()))
    return 0


def cmd_adapters_list(args: argparse.Namespace) -> int:
    adapters = Registry((s := settings(args)).home, s.assistant.model).list()
    if args.json:
        print(json.dumps([{"name": a.name, "active": a.active, **a.metadata} for a in adapters], indent=2))
        return 0
    if not adapters:
        print("no adapters yet: `ragtune dataset build` then `ragtune finetune`")
        return 0
    for a in adapters:
        metrics = a.metadata.get("metrics", {})
        change = Evaluation(a.metadata.get("evaluation") or {}).rag_f1_change()
        print(
            f"{'*' if a.active else ' '} {a.name:<28} base {a.base_model}  {a.metadata.get('created', '')}  "
            f"steps {metrics.get('steps')}  val loss {metrics.get('val_loss')}{f'  RAG F1 {change}' if change else ''}"
        )
    return 0


def cmd_adapters_activate(args: argparse.Namespace) -> int:
    s = settings(args)
    if args.adapter_name in ("none", "base"):
        Registry(s.home, s.assistant.model).deactivate()
        print("the assistant uses the base model")
        return 0
    print(f"active adapter: {activate_adapter(s.assistant, s.home, args.adapter_name)}")
    return 0


def cmd_adapters_rollback(args: argparse.Namespace) -> int:
    s = settings(args)
    name = rollback_adapter(s.assistant, s.home)
    print(f"active adapter: {name}" if name else "the assistant uses the base model")
    return 0


def cmd_adapters_remove(args: argparse.Namespace) -> int:
    Registry(settings(args).home).remove(args.adapter_name)
    print(f"removed adapter {args.adapter_name}")
    return 0


def cmd_adapters_vllm(args: argparse.Namespace) -> int:
    s = settings(args)
    config, home = s.assistant, s.home
    command = vllm_command(config, home, args.all, args.port)
    dora = [a.name for a in Registry(home).list() if a.metadata.get("hyperparameters", {}).get("dora")]
    print("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True " + command)
    print("\n# then, in the [assistant] table (or --set):")
    print('backend = "openai"')
    print(f'base_url = "http://127.0.0.1:{args.port}/v1"')
    print("load_adapters = true    # `ragtune adapters activate NAME` loads NAME into the running vLLM first")
    if config.native_tools:
        print("# --tool-call-parser hermes suits Qwen2.5/Hermes-style templates; pick the parser of your model,")
        print("# or drop both tool flags and set native_tools = false (tools in the prompt, as for SmolLM2)")
    if dora:
        print(f"# note: {', '.join(dora)} use DoRA, which vLLM does not serve: retrain with dora = false")
    return 0
