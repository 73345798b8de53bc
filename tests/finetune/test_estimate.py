"""The training estimate on a tiny Llama: measured tokens/s, a duration of tokens / (tokens/s), the hour warning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from finetune.config import FinetuneConfig
from finetune.errors import FinetuneError
from finetune.estimate import Estimate, Speed, Workload, duration, estimate_training
from finetune.train import LoRARecipe
from tests.finetune.test_train import memorisation

CONFIG = FinetuneConfig(batch_size=4, epochs=3, lora_r=4, lora_alpha=8, device="cpu", precision="fp32")


def test_a_few_timed_steps_give_this_machines_speed_and_the_runs_duration(tiny_lm: str, tmp_path: Path) -> None:
    home, dataset = tmp_path / "home", memorisation(tmp_path / "ds")
    found = estimate_training(CONFIG, tiny_lm, home, dataset, timed_steps=2)
    assert found.speed.tokens_per_s > 0 and found.speed.timed_steps == 2 and found.speed.timed_tokens > 0
    assert found.speed.precision == "fp32" and found.speed.device == "cpu"
    # the run's steps and tokens are the recipe's own: 12 examples in batches of 4, 3 epochs
    recipe = LoRARecipe(CONFIG, tiny_lm, home, dataset, "same", progress=False)
    recipe.setup()
    assert found.workload.examples == 12 and found.total_steps == recipe.total_steps == 9
    assert found.workload.tokens_per_epoch == sum(recipe.lengths)
    assert found.tokens == 3 * sum(recipe.lengths)
    assert found.seconds == pytest.approx(found.tokens / found.speed.tokens_per_s)
    lines = found.lines()
    assert lines[0] == f"12 examples × 3 epochs = 9 steps (about {found.tokens:,} tokens)"
    assert "tokens/s" in lines[1] and lines[2] == "precision: fp32" and "estimated training time" in lines[3]
    assert not found.over_an_hour and not any("over an hour" in line for line in lines)
    assert not (home / "runs").exists() and not (home / "adapters").exists()  # nothing written

    # bf16 on a CPU runs as autocast; steps instead of epochs
    autocast = estimate_training(dataclasses.replace(CONFIG, precision="bf16", steps=5), tiny_lm, home, dataset)
    assert autocast.speed.precision == "bf16 autocast (fp32 weights)" and autocast.total_steps == 5
    assert autocast.lines()[0].startswith("5 steps × up to 4 examples")


def test_over_an_hour_comes_with_a_warning() -> None:
    work = Workload(examples=1000, batches_per_epoch=125, tokens_per_epoch=500_000, batch_size=8, grad_accum=1)
    slow = Estimate(work, Speed(100.0, "fp32", "cpu", 3, 300, 3.0), epochs=2)
    assert slow.tokens == 1_000_000 and slow.seconds == 10_000 and slow.over_an_hour
    assert slow.lines()[-1].startswith("⚠️ over an hour") and "2.8 h" in slow.lines()[3]
    fast = dataclasses.replace(slow, speed=dataclasses.replace(slow.speed, tokens_per_s=1000.0))
    assert fast.seconds == 1000 and not fast.over_an_hour and "17 min" in fast.lines()[3]
    assert not any("over an hour" in line for line in fast.lines())
    exactly = slow.scheduled(epochs=0.72)  # 90 steps, 360,000 tokens: exactly an hour is not over it
    assert exactly.total_steps == 90 and exactly.seconds == 3600 and not exactly.over_an_hour
    assert slow.scheduled(epochs=2, steps=10).total_steps == 10
    assert [duration(s) for s in (40, 720, 9000)] == ["40 s", "12 min", "2.5 h"]


def test_without_a_dataset_the_estimate_says_what_to_do(tiny_lm: str, tmp_path: Path) -> None:
    with pytest.raises(FinetuneError, match="dataset build"):
        estimate_training(CONFIG, tiny_lm, tmp_path / "home", tmp_path / "none")
