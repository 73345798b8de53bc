"""The starter adapter: in every registry, active by default for its own model only, a start for training."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from finetune import adapters
from finetune.adapters import ACTIVE_FILE, STARTER, Registry
from finetune.errors import FinetuneError
from finetune.train import LoRARecipe, finetune
from tests.conftest import trained_adapter
from tests.finetune.test_train import CONFIG, memorisation


@pytest.fixture
def starter(tiny_lm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A starter adapter for the tiny model, where the shipped one would be."""
    folder = trained_adapter(tiny_lm, tmp_path / "package", "starter")
    monkeypatch.setattr(adapters, "STARTER_DIR", folder)
    return folder


def test_a_new_home_lists_the_starter_and_answers_with_it_only_on_its_model(
    starter: Path, tiny_lm: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    registry = Registry(home, tiny_lm)
    assert [a.name for a in registry.list()] == [STARTER]
    assert registry.active() == STARTER and registry.resolve("active") == str(starter)
    assert registry.list()[0].active and registry.resolve("none") == ""
    assert not (home / "adapters" / ACTIVE_FILE).exists()  # nothing written by looking

    other = Registry(home, "org/Other-1B")
    assert other.active() is None and other.resolve("active") == ""  # another base model never gets it
    assert [a.name for a in other.list()] == [STARTER] and not other.list()[0].active
    with pytest.raises(FinetuneError, match=r"trained on .*tiny-lm.*org/Other-1B"):
        other.activate(STARTER, "org/Other-1B")


def test_a_user_adapter_wins_and_rollback_returns_to_the_starter(starter: Path, tiny_lm: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    trained_adapter(tiny_lm, home, "mine")
    registry = Registry(home, tiny_lm)
    registry.activate("mine", tiny_lm)
    assert registry.active() == "mine" and registry.resolve("active") == str(home / "adapters" / "mine")
    assert registry.rollback() == STARTER and registry.active() == STARTER

    registry.deactivate()  # an explicit choice of the base model sticks
    assert registry.active() is None and Registry(home, tiny_lm).resolve("active") == ""
    assert registry.rollback() == STARTER


def test_the_starter_cannot_be_removed_changed_or_shadowed(starter: Path, tiny_lm: str, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "home", tiny_lm)
    with pytest.raises(FinetuneError, match="ships with ragtune and cannot be removed"):
        registry.remove(STARTER)
    with pytest.raises(FinetuneError, match="name of the shipped adapter"):
        registry.add(STARTER, tmp_path / "anything")
    with pytest.raises(FinetuneError, match="ships with ragtune"):
        registry.update_metadata(STARTER, evaluation={})
    assert (starter / "adapter_model.safetensors").exists()


def test_the_assistant_answers_with_the_starter_by_default_and_none_gives_the_base(
    starter: Path, tiny_lm: str, tmp_path: Path
) -> None:
    from assistant.backends import load_model
    from assistant.config import AssistantConfig

    home = tmp_path / "home"
    config = AssistantConfig(model=tiny_lm, device="cpu")
    default = load_model(config, home)
    assert default.adapter == str(starter)
    base = load_model(dataclasses.replace(config, adapter="none"), home)
    assert base.adapter == ""
    question = [{"role": "user", "content": "battery warranty value"}]
    tuned = "".join(default.stream(question, max_new_tokens=6))
    plain = "".join(base.stream(question, max_new_tokens=6))
    assert tuned != plain


def test_the_starter_refuses_another_base_model_naming_its_own(starter: Path, tmp_path: Path) -> None:
    from tests.conftest import build_tiny_lm

    other = str(build_tiny_lm(tmp_path / "other-lm"))
    from assistant.backends import load_model
    from assistant.config import AssistantConfig
    from assistant.errors import AssistantError

    config = AssistantConfig(model=other, device="cpu", adapter=STARTER)
    with pytest.raises((FinetuneError, AssistantError), match=r"trained for base model .*tiny-lm"):
        load_model(config, tmp_path / "home")


def test_training_starts_from_the_init_adapter(tiny_lm: str, tmp_path: Path) -> None:
    import torch

    home = tmp_path / "home"
    dataset = memorisation(tmp_path / "ds")
    first = dataclasses.replace(CONFIG, name="first", epochs=40, lora_dropout=0.0, init_adapter="none")
    done = finetune(first, tiny_lm, home, dataset, progress=False)
    assert done.adapter is not None

    # an adapter trained with dropout: this run's own lora_dropout (0) applies, not the adapter's
    saved_config = done.adapter / "adapter_config.json"
    saved_config.write_text(json.dumps({**json.loads(saved_config.read_text()), "lora_dropout": 0.3}))

    # the recipe's LoRA weights before the first step are the named adapter's
    config = dataclasses.replace(CONFIG, name="second", epochs=1, lora_dropout=0.0, init_adapter="first")
    recipe = LoRARecipe(config, tiny_lm, home, dataset, "second", progress=False)
    recipe.setup()
    dropouts = [m for name, m in recipe.model.named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(isinstance(m, torch.nn.Identity) for m in dropouts)
    from safetensors.torch import load_file

    saved = load_file(done.adapter / "adapter_model.safetensors")
    state = {k: v for k, v in recipe.model.state_dict().items() if "lora_" in k}
    assert len(state) == len(saved) > 0
    for key, value in saved.items():
        mine = next(v for k, v in state.items() if k.replace(".default", "") == key)
        assert torch.equal(mine, value)

    # so the first step's loss is the trained adapter's, far below a fresh start's
    def first_loss(name: str) -> float:
        rows = (home / "runs" / name / "metrics.jsonl").read_text().splitlines()
        return next(json.loads(r)["loss"] for r in rows if "loss" in json.loads(r))

    finetune(config, tiny_lm, home, dataset, progress=False)
    fresh = dataclasses.replace(config, name="fresh", init_adapter="none")
    finetune(fresh, tiny_lm, home, dataset, progress=False)
    assert first_loss("second") < 0.5 * first_loss("fresh")
    meta = json.loads((home / "adapters" / "second" / "adapter.json").read_text())
    assert meta["init_adapter"] == "first" and meta["hyperparameters"]["init_adapter"] == "first"


def test_init_adapter_for_another_model_or_unknown_is_one_line_and_writes_nothing(tiny_lm: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    dataset = memorisation(tmp_path / "ds")
    trained_adapter(tiny_lm, home, "foreign", recorded_base="org/Other-1B")
    for value, message in (("foreign", "trained for base model 'org/Other-1B'"), ("nope", "neither a registered")):
        config = dataclasses.replace(CONFIG, name="x", epochs=1, init_adapter=value)
        with pytest.raises(FinetuneError, match=message):
            finetune(config, tiny_lm, home, dataset, progress=False)
        assert not (home / "adapters" / "x").exists()


def test_the_default_init_is_the_starter_only_where_it_fits(starter: Path, tiny_lm: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    dataset = memorisation(tmp_path / "ds")
    config = dataclasses.replace(CONFIG, name="from-starter", epochs=1)  # init_adapter = "starter", the default
    result = finetune(config, tiny_lm, home, dataset, progress=False)
    assert result.metadata["init_adapter"] == STARTER
    shutil.copy(starter / "adapter.json", tmp_path / "kept.json")
    meta = json.loads((starter / "adapter.json").read_text())
    (starter / "adapter.json").write_text(json.dumps({**meta, "base_model": "org/Other-1B"}))
    result = finetune(dataclasses.replace(config, name="fresh"), tiny_lm, home, dataset, progress=False)
    assert result.metadata["init_adapter"] == "none"


@pytest.mark.slow
def test_the_bundled_model_with_the_starter_cites_the_e116_answer_and_calls_the_calculator(
    shipped_starter: Path, bundled_embedder: str
) -> None:
    pytest.importorskip("gguf")
    import re

    from tests.conftest import run_ragtune

    assert run_ragtune("ingest").returncode == 0  # the sample corpus
    listed = run_ragtune("adapters", "list")
    assert re.search(r"^\* starter ", listed.stdout, re.MULTILINE), listed.stdout  # active in a new home

    asked = run_ragtune("ask", "What does error E116 mean and how is it fixed?", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)["answer"]
    assert re.search(r"clamp", answer, re.IGNORECASE) and re.search(r"\[\d\]", answer), answer

    agent = run_ragtune("ask", "--agent", "What is 48213 × 917?", "--json")
    assert agent.returncode == 0, agent.stderr
    reply = json.loads(agent.stdout)
    assert [c["name"] for c in reply["calls"]][:1] == ["calculator"], reply
    assert "44211321" in re.sub(r"[,\s]", "", reply["answer"]), reply["answer"]


@pytest.mark.parametrize(("tuned_f1", "activated"), [(2.0, False), (5.9, True)])
def test_activate_when_done_holds_back_an_adapter_that_scored_below_the_base(
    tuned_f1: float, activated: bool, tiny_lm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant import training
    from assistant.config import AssistantConfig
    from assistant.settings import Settings
    from ingest.config import IngestConfig

    answers = {"questions": 20, "base/rag": {"em": 2.0, "f1": 5.9}, "adapter/rag": {"em": 0.0, "f1": tuned_f1}}
    # the evaluation's numbers are given: what is tested is what train() does with them
    monkeypatch.setattr(training, "evaluate_adapter", lambda *a, **k: training.Evaluation({"answers": answers}))
    tune = dataclasses.replace(CONFIG, name="new", epochs=1, dataset=str(memorisation(tmp_path / "ds")))
    settings = Settings(
        ingest=IngestConfig(home=str(tmp_path / "home")), assistant=AssistantConfig(model=tiny_lm), finetune=tune
    )
    done = training.train(settings, activate=True)
    assert done is not None and done.activated is activated
    active = Registry(settings.home, tiny_lm).active()
    lines = "\n".join(done.lines())
    if activated:
        assert active == "new" and "activated new" in lines
    else:
        assert active is None  # the base model stays
        assert "not activated: it scored below the base model (RAG F1 2.0 against 5.9)" in lines
        assert "`ragtune adapters activate new` activates it anyway" in lines
