"""How long a training run would take on this machine, from a few timed steps before it starts.

:func:`estimate_training` sets up the real recipe (:class:`~finetune.train.LoRARecipe`: the
base model with its LoRA layers in the configured precision, the dataset tokenized and
batched as training will), times a few forward+backward+optimizer steps on the run's own
first batches, and returns an :class:`Estimate`: the examples and epochs, the steps, the
tokens the run will process, this machine's measured tokens/s, the precision that runs and
the duration (tokens / tokens per second). Nothing is written: no run folder, no adapter.

The app's Fine-tune tab and the CLI show :meth:`Estimate.lines`.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from finetune.errors import FinetuneError
from finetune.train import IGNORE, LoRARecipe, make_batches

HOUR = 3600.0


@dataclass(frozen=True)
class Speed:
    """This machine's training speed, measured on real batches of the dataset."""

    tokens_per_s: float  # tokens (padding excluded, as training counts them) per second of a full step
    precision: str  # what runs: "bf16 autocast (fp32 weights)", "bf16", "fp16", "fp32" or "4-bit (QLoRA)"
    device: str
    timed_steps: int
    timed_tokens: int
    seconds: float  # the timed steps' wall time


@dataclass(frozen=True)
class Workload:
    """What one epoch of the dataset is, batched as training batches it."""

    examples: int  # training examples that fit max_tokens
    batches_per_epoch: int
    tokens_per_epoch: int
    batch_size: int
    grad_accum: int
    too_long: int = 0  # examples over max_tokens, left out

    def steps(self, epochs: float, steps: int = 0) -> int:
        """Optimizer steps of a run of ``steps`` (when > 0) or ``epochs`` epochs, as training counts them."""
        if steps > 0:
            return steps
        return max(1, math.ceil(epochs * self.batches_per_epoch / self.grad_accum))

    def tokens(self, steps: int) -> int:
        """Tokens a run of ``steps`` optimizer steps processes."""
        return round(steps * self.grad_accum * self.tokens_per_epoch / self.batches_per_epoch)


@dataclass(frozen=True)
class Estimate:
    """A run's size and this machine's speed: how long it would take."""

    workload: Workload
    speed: Speed
    epochs: float
    steps: int = 0  # the run's steps setting; 0: epochs decide

    @property
    def total_steps(self) -> int:
        return self.workload.steps(self.epochs, self.steps)

    @property
    def tokens(self) -> int:
        return self.workload.tokens(self.total_steps)

    @property
    def seconds(self) -> float:
        """Training time: the run's tokens at the measured tokens/s (loading and evaluation not included)."""
        return self.tokens / self.speed.tokens_per_s

    @property
    def over_an_hour(self) -> bool:
        return self.seconds > HOUR

    def scheduled(self, epochs: float, steps: int = 0) -> Estimate:
        """The same dataset and speed for a run of other length (no new measurement)."""
        return dataclasses.replace(self, epochs=epochs, steps=steps)

    def lines(self) -> list[str]:
        """What the app and the CLI show, one fact a line; the last one is a warning when over an hour."""
        w, s = self.workload, self.speed
        per_step = w.batch_size * w.grad_accum
        if self.steps > 0:
            size = f"{self.steps:,} steps × up to {per_step} examples (about {self.tokens:,} tokens)"
        else:
            size = (
                f"{w.examples:,} examples × {self.epochs:g} epochs = {self.total_steps:,} steps "
                f"(about {self.tokens:,} tokens)"
            )
        out = [
            size,
            f"measured here: {s.tokens_per_s:,.0f} tokens/s ({s.timed_steps} timed steps of the base model "
            f"on the dataset's batches, {s.timed_tokens:,} tokens in {s.seconds:.1f} s, {s.device})",
            f"precision: {s.precision}",
            f"estimated training time: {duration(self.seconds)}, plus loading and the before/after evaluation",
        ]
        if w.too_long:
            out.append(f"{w.too_long} examples are over max_tokens and left out")
        if self.over_an_hour:
            out.append("⚠️ over an hour: lower the epochs, or set steps, for a quicker first adapter")
        return out


def duration(seconds: float) -> str:
    """``seconds`` as people say it: "40 s", "12 min", "2.5 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def precision(recipe: LoRARecipe) -> str:
    """The precision ``recipe``'s steps run in."""
    if recipe.config.quantize:
        return "4-bit (QLoRA)"
    if recipe.autocast:
        return "bf16 autocast (fp32 weights)"
    names = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}
    return names.get(str(recipe.dtype), str(recipe.dtype))


def workload(recipe: LoRARecipe) -> Workload:
    """The dataset of a set-up ``recipe`` as training will batch it (epoch 0's batches stand for every epoch)."""
    c = recipe.config
    batches = make_batches(recipe.lengths, c.batch_size, c.batching, c.seed * 1000, c.batch_tokens)
    batches = batches[: recipe.batches_per_epoch]
    tokens = sum(recipe.lengths[i] for batch in batches for i in batch)
    return Workload(
        len(recipe.train_items), recipe.batches_per_epoch, tokens, c.batch_size, c.grad_accum, recipe.too_long
    )


def measure_speed(recipe: LoRARecipe, timed_steps: int = 3, warmup_steps: int = 1) -> Speed:
    """Time ``timed_steps`` full training steps of a set-up ``recipe`` after ``warmup_steps`` untimed ones.

    Each step is what :meth:`LoRARecipe.train` does: the step's micro-batches forward and
    backward, then the optimizer. The adapter's weights change; the recipe is for measuring only.

    Raises:
        FinetuneError: ``timed_steps`` is below 1.
    """
    import torch

    if timed_steps < 1:
        raise FinetuneError("timed_steps must be at least 1")
    recipe.model.train()
    cuda = recipe.device.type == "cuda"
    tokens, seconds = 0, 0.0
    for step in range(warmup_steps + timed_steps):
        micro = recipe._micro_batches(step)
        label_tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
        if cuda:
            torch.cuda.synchronize()
        tick = time.perf_counter()
        for batch in micro:
            loss, _ = recipe._loss_step(batch)
            recipe.accelerator.backward(loss / max(label_tokens, 1))
        recipe.optimizer.step()
        recipe.optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup_steps:
            seconds += time.perf_counter() - tick
            tokens += sum(int(b["attention_mask"].sum()) for b in micro)
    return Speed(tokens / seconds, precision(recipe), str(recipe.device), timed_steps, tokens, seconds)


def estimate_training(
    config: FinetuneConfig,
    model: str,
    home: Path,
    dataset: Path,
    *,
    timed_steps: int = 3,
    warmup_steps: int = 1,
) -> Estimate:
    """How long ``ragtune finetune`` with ``config`` would take here, from a few timed steps.

    Args:
        config: The training settings (batch size, precision, epochs or steps... as the run will use them).
        model: The base model (the assistant's ``model``).
        home: The data home.
        dataset: Folder written by ``ragtune dataset build``.
        timed_steps: Steps timed for the speed (on the run's own first batches).
        warmup_steps: Untimed steps before them (first-call costs).

    Raises:
        FinetuneError: no dataset, a missing model, bad settings (as the run itself would).
    """
    if not (dataset / "train.jsonl").exists():
        raise FinetuneError(f"no dataset in {dataset}: run `ragtune dataset build` first")
    recipe = LoRARecipe(config, model, home, dataset, config.name or "estimate", progress=False)
    try:
        recipe.setup()
        speed = measure_speed(recipe, timed_steps, warmup_steps)
        return Estimate(workload(recipe), speed, config.epochs, config.steps)
    finally:
        _release(recipe)


def _release(recipe: Any) -> None:
    """Free the measured model's memory at once (a GPU's above all)."""
    if hasattr(recipe, "accelerator"):
        recipe.accelerator.free_memory()
    for name in ("model", "optimizer", "scheduler", "accelerator"):
        if hasattr(recipe, name):
            delattr(recipe, name)
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
