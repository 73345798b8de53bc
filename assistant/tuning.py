"""``ragtune dataset build``, ``ragtune finetune`` and ``ragtune adapters``: fine-tuning seen from the assistant.

The ``finetune`` package builds data, trains and keeps the registry; it cannot
know how the assistant prompts its model. This module supplies that: the RAG and
closed-book prompts of :mod:`assistant.prompt` and the agent's tool transcripts
(:func:`assistant.agent.demonstrate`), so training examples look exactly like
what the model is later asked. It also runs the before/after evaluation on the
dataset's test split: base, base+RAG, tuned and tuned+RAG answers, and
general-text perplexity with and without the adapter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from assistant.config import AssistantConfig
from finetune.config import FinetuneConfig
from ingest.config import IngestConfig

FEEDBACK_FILE = "feedback.jsonl"  # the chat's thumbs-up answers and corrections, in chat-messages form


def finetune_config(args: argparse.Namespace) -> FinetuneConfig:
    """The ``[finetune]`` settings from the config file, ``--set`` and flags (``configs`` checks the keys)."""
    from ingest import cli as ingest_cli
    from ingest.config import load_config, parse_assignments

    keys = {f.name for f in dataclasses.fields(FinetuneConfig)}
    overrides: dict[str, Any] = {k: v for k, v in parse_assignments(args.overrides).items() if k in keys}
    for flag in ("name", "dataset", "examples"):
        value = getattr(args, flag, None)
        if value:
            overrides[flag] = tuple(value) if isinstance(value, list) else value
    return load_config(FinetuneConfig, "finetune", ingest_cli.config_path(args), overrides)


def dataset_folder(config: FinetuneConfig, home: Path) -> Path:
    """``dataset`` as a folder: a path as given, or a name under ``HOME/datasets``."""
    if "/" in config.dataset or config.dataset.startswith("."):
        return Path(config.dataset)
    return home / "datasets" / config.dataset


def training_formats(ingest: IngestConfig, config: AssistantConfig, tools: bool = True) -> Any:
    """The assistant's prompts as the ``finetune`` package needs them to build examples."""
    from assistant.agent import demonstrate
    from assistant.cli import make_registry
    from assistant.model import TemplateOnly
    from assistant.prompt import pack
    from assistant.retrieval import Hit
    from finetune.data import Formats

    template = TemplateOnly(config.model, ingest.home_path, config.context_window)

    def answer_prompt(question: str, chunks: list[Any] | None) -> list[dict[str, Any]]:
        hits = [Hit(c.id, c.text, c.metadata, 0.0, 1.0, None, None) for c in chunks or []]
        return pack(question, hits, [], lambda _messages: 0, 1).messages

    registry = make_registry(ingest, config) if tools else None

    def show(task: Any) -> dict[str, Any] | None:
        assert registry is not None
        return demonstrate(
            task.question,
            task.calls,
            task.answer,
            template,
            registry,
            cite_chunk=task.cite_chunk,
            tool_timeout=config.tool_timeout,
            tool_output_chars=config.tool_output_chars,
        )

    return Formats(
        answer_prompt,
        show if registry is not None else None,
        frozenset(registry.names) if registry is not None else frozenset(),
    )


def _generator(ingest: IngestConfig, config: AssistantConfig) -> Any:
    from assistant.model import complete, load_model

    model = load_model(config, ingest.home_path, "")
    return lambda messages: complete(model, messages, max_new_tokens=160)


# commands -------------------------------------------------------------------------------


def build(
    ingest: IngestConfig, config: AssistantConfig, tune: FinetuneConfig, *, feedback: bool = True, progress: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Build the configured dataset (with the chat's saved feedback unless ``feedback`` is False).

    Returns:
        The dataset folder and the build report.
    """
    from finetune.data import build_dataset

    formats = training_formats(ingest, config, tools=tune.tool_examples > 0)
    if tune.synthetic == "llm":
        formats = dataclasses.replace(formats, generate=_generator(ingest, config))
    out = dataset_folder(tune, ingest.home_path)
    extra = [ingest.home_path / FEEDBACK_FILE] if feedback else []
    return out, build_dataset(tune, ingest, config.model, formats, out, extra, progress=progress)


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from assistant.cli import configs

    ingest, config = configs(args)
    tune = finetune_config(args)
    out, report = build(ingest, config, tune, feedback=not args.no_feedback, progress=not args.json)
    if args.json:
        print(json.dumps({"dataset": str(out), **report}, indent=2))
        return 0
    print(f"dataset {out}")
    print("  examples by source: " + ", ".join(f"{k} {v}" for k, v in sorted(report["sources"].items())))
    print(f"  {report['chunks']} chunks, {report['questions']} synthetic questions")
    print(f"  dropped: {report['duplicates']} duplicates, {report['too_long']} over {tune.max_tokens} tokens")
    splits = report["splits"]
    print(f"  train {splits['train']}, val {splits['val']}, test {splits['test']} ({report['tokens']['train']} tokens)")
    for problem in report["problems"][:20]:
        print(f"  skipped {problem}")
    if len(report["problems"]) > 20:
        print(f"  … and {len(report['problems']) - 20} more rows skipped (see report.json)")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from assistant.cli import configs
    from finetune.adapters import Registry
    from finetune.errors import FinetuneError
    from finetune.train import finetune

    ingest, config = configs(args)
    tune = finetune_config(args)
    home = ingest.home_path
    result = finetune(tune, config.model, home, dataset_folder(tune, home), resume=args.resume or "")
    if not result.main:  # another process of an `accelerate launch` / torchrun run: the main one reports
        return 0
    if result.adapter is None:
        raise FinetuneError(f"training {result.name!r} stopped at step {result.steps}: resume with --resume")
    print(
        f"adapter {result.name}: {result.stopped} after {result.steps} steps in {result.seconds:.0f} s "
        f"({result.tokens} tokens); train loss {result.train_loss:.3f}"
        + (f", best validation loss {result.val_loss:.3f} at step {result.best_step}" if result.val_loss else "")
    )
    registry = Registry(home)
    if not args.no_eval:
        evaluation = evaluate_adapter(ingest, config, tune, result.name, args.eval_tools)
        registry.update_metadata(result.name, evaluation=evaluation)
        print(format_evaluation(evaluation))
    if args.activate:
        activate_adapter(config, home, result.name)
        print(f"activated {result.name}: the assistant uses it from the next question")
    else:
        print(f"`ragtune adapters activate {result.name}` makes the assistant use it")
    return 0


def evaluate_adapter(
    ingest: IngestConfig, config: AssistantConfig, tune: FinetuneConfig, name: str, tools: bool = False
) -> dict[str, Any]:
    """Before/after numbers for a registered adapter: answers on the test split, retention, tool use."""
    from assistant.errors import AssistantError
    from assistant.evaluate import evaluate_answers, load_split
    from assistant.model import LocalModel
    from finetune.adapters import Registry
    from finetune.evaluate import retention

    home = ingest.home_path
    adapter = Registry(home).get(name)
    out: dict[str, Any] = {}
    folder = Path(adapter.metadata["dataset"]["path"])
    if tune.eval_questions and (folder / "test.jsonl").exists():
        try:
            split = load_split(folder, tune.eval_questions)
        except AssistantError:  # a test split without synthetic questions: nothing to score
            split = None
        if split is not None:
            result = evaluate_answers(
                split, ingest, config, ["closed-book", "rag"], str(adapter.path), answer_tokens=32
            )
            out["answers"] = {"questions": result["questions"], **result["arms"]}
    model = LocalModel(config.model, home, str(adapter.path), config.device, config.context_window)
    out["perplexity"] = retention(model.model, model.tokenizer)
    if tools:
        from assistant.tool_eval import evaluate_tools

        result = evaluate_tools(ingest, config, str(adapter.path))
        out["tools"] = {
            label: {k: v for k, v in row.items() if k != "cases"} for label, row in result["variants"].items()
        }
    return out


def format_evaluation(evaluation: dict[str, Any]) -> str:
    lines = []
    answers = evaluation.get("answers")
    if answers:
        lines.append(f"test split, {answers['questions']} questions:  {'EM':>6} {'F1':>6}")
        labels = {"base/closed-book": "base", "base/rag": "base+RAG", "adapter/closed-book": "tuned"}
        labels["adapter/rag"] = "tuned+RAG"
        for arm, label in labels.items():
            if arm in answers:
                lines.append(f"  {label:<30} {answers[arm]['em']:>6.1f} {answers[arm]['f1']:>6.1f}")
    ppl = evaluation.get("perplexity")
    if ppl:
        lines.append(f"general-text perplexity: base {ppl['base']:.2f}, tuned {ppl['tuned']:.2f} (x{ppl['ratio']:.3f})")
    tools = evaluation.get("tools")
    if tools:
        for label in ("base", "adapter"):
            row = tools[label]
            lines.append(
                f"tools {label:<8} right-tool {_pct(row.get('right_tool_rate'))}  "
                f"valid-call {_pct(row.get('valid_call_rate'))}  answer {_pct(row.get('answer_correct'))}"
            )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.1f}"


def cmd_adapters_list(args: argparse.Namespace) -> int:
    from assistant.cli import configs
    from finetune.adapters import Registry

    ingest, _config = configs(args)
    adapters = Registry(ingest.home_path).list()
    if args.json:
        print(json.dumps([{"name": a.name, "active": a.active, **a.metadata} for a in adapters], indent=2))
        return 0
    if not adapters:
        print("no adapters yet: `ragtune dataset build` then `ragtune finetune`")
        return 0
    for a in adapters:
        metrics = a.metadata.get("metrics", {})
        answers = a.metadata.get("evaluation", {}).get("answers", {})
        score = ""
        if "adapter/rag" in answers and "base/rag" in answers:
            score = f"  RAG F1 {answers['base/rag']['f1']:.1f} -> {answers['adapter/rag']['f1']:.1f}"
        print(
            f"{'*' if a.active else ' '} {a.name:<28} base {a.base_model}  {a.metadata.get('created', '')}  "
            f"steps {metrics.get('steps')}  val loss {metrics.get('val_loss')}{score}"
        )
    return 0


def activate_adapter(config: AssistantConfig, home: Path, name: str) -> str:
    """Make adapter ``name`` active; returns its name.

    With the openai backend and ``load_adapters``, the server loads it first (vLLM's runtime LoRA
    endpoint), so a server that cannot load it leaves the active adapter unchanged.

    Raises:
        FinetuneError: unknown name, or an adapter for another base model.
        AssistantError: the server could not load it.
    """
    from finetune.adapters import Registry

    registry = Registry(home)
    info = registry.get(name)
    _load_into_server(config, home, name, info.path)
    return registry.activate(name, config.model).name


def rollback_adapter(config: AssistantConfig, home: Path) -> str | None:
    """Re-activate the previous adapter (None: the base model), loading it into the server first as above."""
    from finetune.adapters import Registry

    registry = Registry(home)
    previous = registry.previous()
    if previous:
        _load_into_server(config, home, previous, registry.path(previous))
    return registry.rollback()


def _load_into_server(config: AssistantConfig, home: Path, name: str, folder: Path) -> None:
    if config.backend != "openai" or not config.load_adapters:
        return
    from assistant.openai_model import OpenAIModel

    OpenAIModel(config, home, str(folder)).load_adapter(name, str(folder.resolve()))
    print(f"loaded adapter {name} into the model server at {config.base_url}")


def cmd_adapters_activate(args: argparse.Namespace) -> int:
    from assistant.cli import configs
    from finetune.adapters import Registry

    ingest, config = configs(args)
    if args.name == "none":
        Registry(ingest.home_path).deactivate()
        print("the assistant uses the base model")
        return 0
    print(f"active adapter: {activate_adapter(config, ingest.home_path, args.name)}")
    return 0


def cmd_adapters_rollback(args: argparse.Namespace) -> int:
    from assistant.cli import configs

    ingest, config = configs(args)
    name = rollback_adapter(config, ingest.home_path)
    print(f"active adapter: {name}" if name else "the assistant uses the base model")
    return 0


def cmd_adapters_remove(args: argparse.Namespace) -> int:
    from assistant.cli import configs
    from finetune.adapters import Registry

    ingest, _config = configs(args)
    Registry(ingest.home_path).remove(args.name)
    print(f"removed adapter {args.name}")
    return 0


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def vllm_command(config: AssistantConfig, home: Path, every: bool = False, port: int = 8000) -> str:
    """The ``vllm serve`` command line for the base model and the active adapter (``every``: all adapters).

    Adapters are served under their registered names, which is how the openai backend asks for them.

    Raises:
        FinetuneError: an adapter's rank is beyond what vLLM serves.
    """
    import shlex

    from finetune.adapters import Registry, same_model
    from finetune.base_model import resolve_model_path
    from finetune.errors import FinetuneError

    registry = Registry(home)
    adapters = [a for a in registry.list() if (every or a.active) and same_model(a.base_model, config.model)]
    path = resolve_model_path(config.model, home)
    weights = str(Path(path).resolve()) if Path(path).exists() else path
    parts = ["vllm", "serve", weights, "--served-model-name", config.served_model or config.model]
    parts += ["--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(config.context_window)]
    if adapters:
        rank = max(int(json.loads((a.path / "adapter_config.json").read_text()).get("r", 16)) for a in adapters)
        fitting = [r for r in VLLM_LORA_RANKS if r >= rank]
        if not fitting:
            raise FinetuneError(f"LoRA rank {rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]}): retrain smaller")
        parts += ["--enable-lora", "--max-lora-rank", str(fitting[0]), "--max-loras", str(max(len(adapters), 1))]
        parts += ["--lora-modules", *(f"{a.name}={a.path.resolve()}" for a in adapters)]
    if config.native_tools:
        parts += ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_adapters_vllm(args: argparse.Namespace) -> int:
    from assistant.cli import configs
    from finetune.adapters import Registry

    ingest, config = configs(args)
    home = ingest.home_path
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
    f.add_argument("--activate", action="store_true", help="activate the adapter when training succeeds")
    f.add_argument("--no-eval", action="store_true", help="skip the before/after evaluation")
    f.add_argument("--eval-tools", action="store_true", help="also run the tool-call eval, base and tuned (slow)")
    f.set_defaults(func=cmd_finetune)

    a = sub.add_parser("adapters", help="list, activate, roll back and remove trained adapters")
    asub = a.add_subparsers(dest="adapters_command", required=True, metavar="{list,activate,rollback,remove,vllm}")
    al = asub.add_parser("list", parents=[parent], help="every adapter with its metrics; * marks the active one")
    al.add_argument("--json", action="store_true", help="print the adapter.json of each")
    al.set_defaults(func=cmd_adapters_list)
    aa = asub.add_parser("activate", parents=[parent], help="make an adapter the one the assistant uses")
    aa.add_argument("name", help="adapter name, or none for the base model")
    aa.set_defaults(func=cmd_adapters_activate)
    ar = asub.add_parser("rollback", parents=[parent], help="re-activate the previously active adapter")
    ar.set_defaults(func=cmd_adapters_rollback)
    rm = asub.add_parser("remove", parents=[parent], help="delete an adapter that is not active")
    rm.add_argument("name", help="adapter name")
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
