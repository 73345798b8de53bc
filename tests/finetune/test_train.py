"""The LoRA recipe on a tiny Llama: adapter-only gradients, learning, resume, early stopping, output, safety."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from finetune.adapters import Registry
from finetune.config import FinetuneConfig
from finetune.errors import FinetuneError
from finetune.train import IGNORE, LoRARecipe, encode, finetune, make_batches
from tests.conftest import free_port

WORDS = [
    "battery",
    "capacity",
    "power",
    "warranty",
    "error",
    "code",
    "install",
    "firmware",
    "update",
    "page",
    "section",
    "table",
    "value",
]


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write_dataset(folder: Path, train: list[dict], val: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("val", val), ("test", [])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def memorisation(folder: Path) -> Path:
    rows = [chat(f"{WORDS[i]} {WORDS[(i + 3) % 13]} value", f"{i % 10} {WORDS[(i * 5) % 13]}") for i in range(12)]
    return write_dataset(folder, rows, rows[:4])


# A random-init model this small learns through its output layer, so the tests adapt that too.
LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
CONFIG = FinetuneConfig(
    batch_size=4,
    epochs=8,
    eval_every=6,
    learning_rate=1e-2,
    lora_r=4,
    lora_alpha=8,
    target_modules=LAYERS,
    device="cpu",
    patience=0,
    precision="fp32",  # the same numbers on every CPU ("auto" autocasts to bf16 where the CPU has it)
)


def test_labels_cover_only_the_assistant_turns(tiny_lm: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    messages = [
        {"role": "system", "content": "page"},
        {"role": "user", "content": "battery value"},
        {"role": "assistant", "content": "power 5"},
        {"role": "user", "content": "error code"},
        {"role": "assistant", "content": "table 7"},
    ]
    ids, labels = encode(tokenizer, messages)
    learned = tokenizer.decode([t for t, label in zip(ids, labels) if label != IGNORE])
    assert learned.split() == ["power", "5", "<|im_end|>", "table", "7", "<|im_end|>"]
    assert len(ids) == len(labels) and labels[0] == IGNORE


def test_batches_group_lengths_and_cover_every_example_once() -> None:
    lengths = [5, 50, 6, 49, 7, 48, 8, 47]
    batches = make_batches(lengths, 2, "length", seed=3)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(abs(lengths[a] - lengths[b]) <= 2 for a, b in batches)  # short with short, long with long
    assert make_batches(lengths, 2, "length", seed=3) == batches and make_batches(lengths, 2, "length", 4) != batches


def test_only_adapter_parameters_receive_gradients(tiny_lm: str, tmp_path: Path) -> None:
    from finetune.train import collate

    recipe = LoRARecipe(CONFIG, tiny_lm, tmp_path / "home", memorisation(tmp_path / "ds"), "grads", progress=False)
    recipe.setup()
    loss, count = recipe._loss_step(collate(recipe.train_items[:4], recipe.pad_id))
    loss.backward()
    assert count > 0
    named = list(recipe.model.named_parameters())
    adapter = [(n, p) for n, p in named if "lora_" in n]
    base = [(n, p) for n, p in named if "lora_" not in n]
    assert adapter and all(p.requires_grad and p.grad is not None for _, p in adapter)
    assert any(float(p.grad.abs().sum()) > 0 for _, p in adapter)
    assert all(not p.requires_grad and p.grad is None for _, p in base)


def test_loss_falls_on_a_memorisation_set_and_the_adapter_round_trips(tiny_lm: str, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    home = tmp_path / "home"
    dataset = memorisation(tmp_path / "ds")
    config = dataclasses.replace(CONFIG, name="memo", batch_size=12, epochs=150, eval_every=50, lora_dropout=0.0)
    result = finetune(config, tiny_lm, home, dataset, progress=False)
    rows = [json.loads(line) for line in (home / "runs" / "memo" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    validations = [r["val_loss"] for r in rows if "val_loss" in r]
    assert result.stopped == "completed" and result.steps == 150
    assert losses[0] > 4 and losses[-1] < 0.05  # from chance to memorised
    assert validations[-1] < 0.05 < validations[0]

    # the adapter loads with plain peft and gives the trained model's outputs
    assert result.adapter == home / "adapters" / "memo"
    files = {p.name for p in result.adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "adapter.json", "metrics.jsonl", "loss.png"} <= files
    meta = json.loads((result.adapter / "adapter.json").read_text())
    assert meta["base_model"] == tiny_lm and len(meta["base_model_hash"]) == 16
    assert meta["dataset"]["train"] == 12 and meta["dataset"]["val"] == 4 and len(meta["dataset"]["hash"]) == 16
    assert meta["hyperparameters"]["lora_r"] == 4 and meta["metrics"]["steps"] == 150
    assert meta["metrics"]["val_loss"] == pytest.approx(min(validations), abs=1e-4)
    assert meta["created"] and meta["ragtune_version"]
    assert json.loads((result.adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_lm
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    ids = torch.tensor([[5, 6, 7, 8]])
    plain = base(input_ids=ids).logits
    tuned = PeftModel.from_pretrained(base, str(result.adapter)).eval()
    assert not torch.allclose(tuned(input_ids=ids).logits, plain)
    with tuned.disable_adapter():
        assert torch.allclose(tuned(input_ids=ids).logits, plain)
    assert Registry(home).active() is None  # training never activates on its own

    # the assistant's default adapter setting ("active") follows the registry
    from assistant.backends import load_model
    from assistant.config import AssistantConfig

    config = AssistantConfig(model=tiny_lm, device="cpu")
    assert load_model(config, home).adapter == ""
    Registry(home).activate("memo", tiny_lm)
    assert load_model(config, home).adapter == str(home / "adapters" / "memo")
    assert load_model(config, home, "none").adapter == ""


def test_resume_reproduces_the_uninterrupted_run(tiny_lm: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    dataset = memorisation(tmp_path / "ds")
    config = dataclasses.replace(CONFIG, epochs=3, lora_dropout=0.2, eval_every=4)
    whole = finetune(dataclasses.replace(config, name="whole"), tiny_lm, tmp_path / "a", dataset, progress=False)

    steps = []
    cut = finetune(
        dataclasses.replace(config, name="cut"),
        tiny_lm,
        tmp_path / "b",
        dataset,
        progress=False,
        should_stop=lambda: len(steps) >= 5,
        on_metrics=lambda row: steps.append(row["step"]) if "loss" in row else None,
    )
    assert cut.stopped == "cancelled" and cut.adapter is None and cut.steps == 5
    assert not (tmp_path / "b" / "adapters" / "cut").exists()
    resumed = finetune(config, tiny_lm, tmp_path / "b", dataset, resume="cut", progress=False)
    assert resumed.stopped == "completed" and resumed.steps == whole.steps
    a = load_file(str(whole.adapter / "adapter_model.safetensors"))
    b = load_file(str(resumed.adapter / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].allclose(b[k], atol=1e-6) for k in a)

    def losses(home: Path, name: str) -> list[float]:
        lines = (home / "runs" / name / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line).get("loss") or json.loads(line).get("val_loss") for line in lines]

    assert losses(tmp_path / "b", "cut") == pytest.approx(losses(tmp_path / "a", "whole"), abs=1e-5)


def test_early_stopping_fires_and_keeps_the_best_step(tiny_lm: str, tmp_path: Path) -> None:
    # validation contradicts training: the better the model learns, the worse validation gets
    train = [chat(f"{w} value", "5 power") for w in WORDS]
    val = [chat(f"{w} value", "7 table") for w in WORDS[:4]]
    config = dataclasses.replace(CONFIG, name="early", epochs=20, eval_every=2, patience=2)
    result = finetune(config, tiny_lm, tmp_path / "home", write_dataset(tmp_path / "ds", train, val), progress=False)
    assert result.stopped == "early_stop"
    assert result.steps < 20 * 4 and result.best_step is not None and result.best_step < result.steps
    assert result.metadata["metrics"]["best_step"] == result.best_step


def test_user_errors_are_one_line_and_change_nothing(tiny_lm: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    dataset = memorisation(tmp_path / "ds")
    with pytest.raises(FinetuneError, match="needs a CUDA GPU"):
        finetune(dataclasses.replace(CONFIG, quantize="4bit"), tiny_lm, home, dataset, progress=False)
    with pytest.raises(FinetuneError, match="precision=fp16 needs a CUDA GPU"):
        finetune(dataclasses.replace(CONFIG, precision="fp16"), tiny_lm, home, dataset, progress=False)
    with pytest.raises(FinetuneError, match="ragtune dataset build"):
        finetune(CONFIG, tiny_lm, home, tmp_path / "nothing", progress=False)
    with pytest.raises(FinetuneError, match="could not be loaded"):
        finetune(CONFIG, str(tmp_path / "no-model"), home, dataset, progress=False)
    with pytest.raises(FinetuneError, match="no run named 'ghost'"):
        finetune(CONFIG, tiny_lm, home, dataset, resume="ghost", progress=False)
    with pytest.raises(FinetuneError, match="lora_r"):
        FinetuneConfig(lora_r=0)
    assert Registry(home).list() == []
    (Registry(home).root / "taken").mkdir()
    (Registry(home).root / "taken" / "adapter.json").write_text("{}")
    with pytest.raises(FinetuneError, match="'taken' exists"):
        finetune(dataclasses.replace(CONFIG, name="taken"), tiny_lm, home, dataset, progress=False)


def test_auto_precision_on_a_cpu_autocasts_exactly_when_it_multiplies_bf16(
    tiny_lm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import finetune.train as train

    dataset = memorisation(tmp_path / "ds")
    for native in (True, False):
        monkeypatch.setattr(train, "cpu_has_bf16", lambda native=native: native)
        auto = dataclasses.replace(CONFIG, name="p", precision="auto")
        recipe = LoRARecipe(auto, tiny_lm, tmp_path / "home", dataset, "p", False)
        recipe.setup()
        assert recipe.autocast is native
        assert {p.dtype for p in recipe.model.parameters()} == {torch.float32}  # weights stay fp32 either way


def test_bf16_on_a_cpu_trains_with_autocast(tiny_lm: str, tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, name="bf16", precision="bf16", steps=3)
    result = finetune(config, tiny_lm, tmp_path / "home", memorisation(tmp_path / "ds"), progress=False)
    assert result.stopped == "completed" and result.train_loss is not None and result.train_loss < 10


def test_two_processes_train_one_adapter(tiny_lm: str, tmp_path: Path) -> None:
    """The same entry point under torchrun (what `accelerate launch` starts): DDP over gloo on CPU."""
    import subprocess
    import sys

    port = free_port()
    dataset = memorisation(tmp_path / "ds")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    command += ["-m", "assistant", "finetune", "--name", "ddp", "--dataset", str(dataset), "--no-eval"]
    command += [
        "--set",
        f"model={tiny_lm}",
        "--set",
        "finetune.batch_size=2",
        "--set",
        "epochs=2",
        "--set",
        "finetune.device=cpu",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("adapter ddp: completed after 6 steps") == 1  # 12 examples, 2 per batch, 2 processes
    meta = json.loads((tmp_path / "home" / "adapters" / "ddp" / "adapter.json").read_text())
    assert meta["metrics"]["processes"] == 2 and meta["metrics"]["steps"] == 6
