"""Fine-tuning seen from the assistant: dataset build, train → evaluate → record → activate, the adapter registry.

The ``finetune`` package builds data, trains and keeps the registry; it cannot
know how the assistant prompts its model. This module supplies that: the RAG and
closed-book prompts of :mod:`assistant.prompt` and the agent's tool transcripts
(:func:`assistant.agent.demonstrate`), so training examples look exactly like
what the model is later asked. :func:`train` is the whole job the CLI, the app's
background runs and Python callers share: train, score base against tuned on the
dataset's test split (answers, general-text perplexity, optionally tool use),
record the numbers in the adapter's ``adapter.json``, and activate on request.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.agent import demonstrate
from assistant.backends import load_into_server
from assistant.config import AssistantConfig
from assistant.errors import AssistantError
from assistant.evaluate import evaluate_answers, load_split
from assistant.model import ChatModel, LocalModel, TemplateOnly, complete
from assistant.prompt import pack
from assistant.retrieval import Hit
from assistant.settings import Settings
from assistant.tool_eval import evaluate_tools
from assistant.tools import ToolRegistry
from finetune.adapters import NO_ADAPTER, Registry, same_model
from finetune.base_model import resolve_model_path
from finetune.config import FinetuneConfig
from finetune.data import Formats, build_dataset
from finetune.errors import FinetuneError
from finetune.retention import retention
from finetune.train import TrainResult, finetune

FEEDBACK_FILE = "feedback.jsonl"  # the chat's thumbs-up answers and corrections, in chat-messages form
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def dataset_folder(config: FinetuneConfig, home: Path) -> Path:
    """``dataset`` as a folder: a path as given, or a name under ``HOME/datasets``."""
    if "/" in config.dataset or config.dataset.startswith("."):
        return Path(config.dataset)
    return home / "datasets" / config.dataset


def training_formats(settings: Settings, registry: ToolRegistry | None) -> Formats:
    """The assistant's prompts as the ``finetune`` package needs them to build examples.

    Args:
        settings: The model (its template) and the agent's limits.
        registry: The tools whose calls become examples; None for no tool examples.
    """
    config = settings.assistant
    template = TemplateOnly(config.model, settings.home, config.context_window)

    def answer_prompt(question: str, chunks: list[Any] | None) -> list[dict[str, Any]]:
        hits = [Hit(c.id, c.text, c.metadata, 0.0, 1.0, None, None) for c in chunks or []]
        return pack(question, hits, [], lambda _messages: 0, 1).messages

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


@dataclass
class DatasetBuild:
    """A built dataset: its folder and the build report (``report.json``)."""

    folder: Path
    report: dict[str, Any]

    def lines(self, max_tokens: int) -> list[str]:
        """The report as the CLI and the app show it."""
        report = self.report
        splits = report["splits"]
        lines = [
            "examples by source: " + ", ".join(f"{k} {v}" for k, v in sorted(report["sources"].items())),
            f"{report['chunks']} chunks, {report['questions']} synthetic questions",
            f"dropped: {report['duplicates']} duplicates, {report['too_long']} over {max_tokens} tokens",
            f"train {splits['train']}, val {splits['val']}, test {splits['test']} "
            f"({report['tokens']['train']:,} tokens)",
        ]
        problems = report["problems"]
        lines += [f"skipped {problem}" for problem in problems[:20]]
        if len(problems) > 20:
            lines.append(f"… and {len(problems) - 20} more rows skipped (see report.json)")
        return lines


def build(
    settings: Settings,
    registry: ToolRegistry | None,
    *,
    model: ChatModel | None = None,
    feedback: bool = True,
    progress: bool = True,
) -> DatasetBuild:
    """Build the configured dataset (with the chat's saved feedback unless ``feedback`` is False).

    Args:
        settings: Which collection, which dataset, how to build it.
        registry: The agent's tools, for tool-use examples (None: none).
        model: The chat model that writes questions when ``synthetic = "llm"``.
        feedback: Include ``HOME/feedback.jsonl``.
        progress: Show progress bars.
    """
    tune = settings.finetune
    formats = training_formats(settings, registry if tune.tool_examples > 0 else None)
    if tune.synthetic == "llm":
        if model is None:
            raise AssistantError("synthetic = llm needs the chat model: load it first")
        writer = model
        formats = dataclasses.replace(formats, generate=lambda messages: complete(writer, messages, max_new_tokens=160))
    out = dataset_folder(tune, settings.home)
    extra = [settings.home / FEEDBACK_FILE] if feedback else []
    report = build_dataset(tune, settings.ingest, settings.assistant.model, formats, out, extra, progress=progress)
    return DatasetBuild(out, report)


@dataclass
class Evaluation:
    """The before/after numbers of an adapter, as recorded in its ``adapter.json`` under ``evaluation``."""

    data: dict[str, Any] = field(default_factory=dict)

    def rag_f1_change(self) -> str:
        """``"5.9 → 37.5"``: base+RAG F1 then tuned+RAG F1 on the test split; "" when not measured."""
        answers = self.data.get("answers") or {}
        if "base/rag" in answers and "adapter/rag" in answers:
            return f"{answers['base/rag']['f1']:.1f} → {answers['adapter/rag']['f1']:.1f}"
        return ""

    def below_base(self) -> tuple[float, float] | None:
        """(tuned, base) RAG F1 on the test split when the adapter scored below the base model, else None."""
        answers = self.data.get("answers") or {}
        if "base/rag" in answers and "adapter/rag" in answers:
            tuned, base = float(answers["adapter/rag"]["f1"]), float(answers["base/rag"]["f1"])
            if tuned < base:
                return tuned, base
        return None

    def lines(self) -> list[str]:
        """The numbers as the CLI and the app show them."""
        lines = []
        answers = self.data.get("answers")
        if answers:
            lines.append(f"test split, {answers['questions']} questions:  {'EM':>6} {'F1':>6}")
            labels = {"base/closed-book": "base", "base/rag": "base+RAG"}
            start = self.data.get("start_adapter")
            if start:
                labels |= {f"{start}/closed-book": f"{start} (start)", f"{start}/rag": f"{start} (start)+RAG"}
            labels |= {"adapter/closed-book": "tuned", "adapter/rag": "tuned+RAG"}
            for arm, label in labels.items():
                if arm in answers:
                    lines.append(f"  {label:<30} {answers[arm]['em']:>6.1f} {answers[arm]['f1']:>6.1f}")
        ppl = self.data.get("perplexity")
        if ppl:
            lines.append(
                f"general-text perplexity: base {ppl['base']:.2f}, tuned {ppl['tuned']:.2f} (x{ppl['ratio']:.3f})"
            )
        tools = self.data.get("tools")
        if tools:
            for label in ("base", "adapter"):
                row = tools[label]
                lines.append(
                    f"tools {label:<8} right-tool {_pct(row.get('right_tool_rate'))}  "
                    f"valid-call {_pct(row.get('valid_call_rate'))}  answer {_pct(row.get('answer_correct'))}"
                )
        return lines


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.1f}"


def evaluate_adapter(
    settings: Settings,
    name: str,
    *,
    tools: bool = False,
    model: LocalModel | None = None,
    embedder: Callable[[str, str], Any] | None = None,
) -> Evaluation:
    """Before/after numbers for a registered adapter: answers on the test split, retention, tool use.

    Args:
        settings: The model, the collection and how many test questions.
        name: A registered adapter.
        tools: Also run the tool-call eval, base and tuned.
        model: The base model already loaded (its adapters are switched per reply); None loads it.
        embedder: Loads an embedder by (name, device); None loads a fresh one.
    """
    home = settings.home
    config = settings.assistant
    registry = Registry(home, config.model)
    adapter = registry.get(name)
    base = model or LocalModel(
        config.model, home, "", config.device, config.context_window, config.repetition_penalty, config.cpu_dtype
    )
    out: dict[str, Any] = {}
    start = str(adapter.metadata.get("init_adapter") or "none")  # compared too: did training add to it?
    known = start not in NO_ADAPTER and any(a.name == start for a in registry.list())
    others = {start: registry.resolve(start)} if known else {}
    folder = Path(adapter.metadata["dataset"]["path"])
    if settings.finetune.eval_questions and (folder / "test.jsonl").exists():
        try:
            split = load_split(folder, settings.finetune.eval_questions)
        except AssistantError:  # a test split without synthetic questions: nothing to score
            split = None
        if split is not None:
            result = evaluate_answers(
                split,
                settings.ingest,
                config,
                base,
                ["closed-book", "rag"],
                str(adapter.path),
                answer_tokens=32,
                embedder=embedder,
                others=others,
            )
            out["answers"] = {"questions": result["questions"], **result["arms"]}
            if others:
                out["start_adapter"] = start
    tuned = base.with_adapter(str(adapter.path))
    with tuned.hold() as weights:
        out["perplexity"] = retention(weights, tuned.tokenizer)
    if tools:
        result = evaluate_tools(settings.ingest, config, base, str(adapter.path), embedder=embedder)
        out["tools"] = {
            label: {k: v for k, v in row.items() if k != "cases"} for label, row in result["variants"].items()
        }
    return Evaluation(out)


@dataclass
class Trained:
    """What :func:`train` did: the training result, the evaluation, whether the adapter was activated."""

    result: TrainResult
    evaluation: Evaluation | None = None
    activated: bool = False
    held_back: str = ""  # why an adapter asked to be activated was not

    def lines(self) -> list[str]:
        r = self.result
        head = (
            f"adapter {r.name}: {r.stopped} after {r.steps} steps in {r.seconds:.0f} s "
            f"({r.tokens} tokens); train loss {r.train_loss:.3f}"
        )
        if r.val_loss:
            head += f", best validation loss {r.val_loss:.3f} at step {r.best_step}"
        lines = [head, *(self.evaluation.lines() if self.evaluation else [])]
        if self.activated:
            lines.append(f"activated {r.name}: the assistant uses it from the next question")
        elif self.held_back:
            lines.append(f"not activated: {self.held_back}; `ragtune adapters activate {r.name}` activates it anyway")
        else:
            lines.append(f"`ragtune adapters activate {r.name}` makes the assistant use it")
        return lines


def train(
    settings: Settings,
    *,
    resume: str = "",
    activate: bool = False,
    evaluate: bool = True,
    eval_tools: bool = False,
    model: LocalModel | None = None,
    embedder: Callable[[str, str], Any] | None = None,
) -> Trained | None:
    """Train the adapter ``settings.finetune.name`` on the built dataset, evaluate it, record it, maybe activate it.

    Args:
        settings: Everything: model, dataset, hyperparameters, the collection the evaluation searches.
        resume: Continue this adapter's interrupted run from its last checkpoint.
        activate: Make the adapter active when training and evaluation succeed, unless it scored below the
            base model (then it is kept, not activated, and ``held_back`` says why).
        evaluate: Run the before/after evaluation and record it in ``adapter.json``.
        eval_tools: Also run the tool-call eval, base and tuned.
        model: The base model already loaded, for the evaluation.
        embedder: Loads an embedder by (name, device), for the evaluation.

    Returns:
        What was done; None in a secondary process of a multi-process run (the main one reports).

    Raises:
        FinetuneError: bad data or settings, or a run that stopped before registering (resume it).
    """
    home = settings.home
    tune = settings.finetune
    result = finetune(tune, settings.assistant.model, home, dataset_folder(tune, home), resume=resume)
    if not result.main:
        return None
    if result.adapter is None:
        raise FinetuneError(f"training {result.name!r} stopped at step {result.steps}: resume with --resume")
    trained = Trained(result)
    if evaluate:
        trained.evaluation = evaluate_adapter(settings, result.name, tools=eval_tools, model=model, embedder=embedder)
        Registry(home, settings.assistant.model).update_metadata(result.name, evaluation=trained.evaluation.data)
    below = trained.evaluation.below_base() if trained.evaluation else None
    if activate and below:
        trained.held_back = f"it scored below the base model (RAG F1 {below[0]:.1f} against {below[1]:.1f})"
    elif activate:
        activate_adapter(settings.assistant, home, result.name)
        trained.activated = True
    return trained


def activate_adapter(config: AssistantConfig, home: Path, name: str) -> str:
    """Make adapter ``name`` active; returns its name.

    With the openai backend and ``load_adapters``, the server loads it first (vLLM's runtime LoRA
    endpoint), so a server that cannot load it leaves the active adapter unchanged.

    Raises:
        FinetuneError: unknown name, or an adapter for another base model.
        AssistantError: the server could not load it.
    """
    registry = Registry(home, config.model)
    info = registry.get(name)
    load_into_server(config, home, name, info.path)
    return registry.activate(name, config.model).name


def rollback_adapter(config: AssistantConfig, home: Path) -> str | None:
    """Re-activate the previous adapter (None: the base model), loading it into the server first as above."""
    registry = Registry(home, config.model)
    previous = registry.previous()
    if previous:
        load_into_server(config, home, previous, registry.path(previous))
    return registry.rollback()


def vllm_command(config: AssistantConfig, home: Path, every: bool = False, port: int = 8000) -> str:
    """The ``vllm serve`` command line for the base model and the active adapter (``every``: all adapters).

    Adapters are served under their registered names, which is how the openai backend asks for them.

    Raises:
        FinetuneError: an adapter's rank is beyond what vLLM serves.
    """
    registry = Registry(home, config.model)
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
