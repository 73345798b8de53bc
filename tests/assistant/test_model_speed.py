"""Generation speed settings of the local backend: the CPU dtype, adapters on it, and the prefix cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import AssistantConfig
from assistant.errors import AssistantError
from assistant.model import LocalModel, complete, pick_dtype
from ingest.embedding import cpu_has_bf16
from tests.conftest import trained_adapter

QUESTION = [
    {"role": "system", "content": "battery warranty error code install firmware update page section " * 3},
    {"role": "user", "content": "the quick brown fox jumps over the lazy dog"},
]


def test_cpu_dtype_is_validated_in_one_line() -> None:
    with pytest.raises(AssistantError, match=r"^cpu_dtype must be auto, fp32 or bf16, got 'fp16'$"):
        AssistantConfig(cpu_dtype="fp16")
    with pytest.raises(AssistantError, match="cpu_dtype must be"):
        pick_dtype("cpu", "int8")


def test_auto_follows_the_cpu_and_other_devices_keep_their_dtype() -> None:
    assert pick_dtype("cpu", "auto") == ("bf16" if cpu_has_bf16() else "fp32")
    assert pick_dtype("cpu", "fp32") == "fp32"
    assert pick_dtype("cpu", "bf16") == "bf16"
    assert pick_dtype("cuda", "fp32") == "bf16", "GPU paths are unchanged"
    assert pick_dtype("mps", "bf16") == "fp32"


def test_bf16_generates_like_fp32(tiny_lm: str, tmp_path: Path) -> None:
    import torch

    fp32 = LocalModel(tiny_lm, tmp_path, device="cpu", cpu_dtype="fp32")
    bf16 = LocalModel(tiny_lm, tmp_path, device="cpu", cpu_dtype="bf16")
    assert next(fp32.model.parameters()).dtype == torch.float32
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert complete(bf16, QUESTION, max_new_tokens=8), "bf16 generates"
    # Greedy tokens are compared where the top choice is clear: random weights give near-ties
    # that bf16 rounding may flip, so the first token and the logits are what must agree.
    ids = fp32.tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        a = fp32.model(**ids).logits[0, -1]
        b = bf16.model(**ids).logits[0, -1].float()
    assert torch.allclose(a, b, atol=0.05 * a.abs().max().item())
    if (a.topk(2).values.diff().abs() > 0.05 * a.abs().max()).item():
        assert a.argmax() == b.argmax()


def test_an_adapter_applies_on_bf16(tiny_lm: str, tmp_path: Path) -> None:
    import torch

    folder = str(trained_adapter(tiny_lm, tmp_path / "home", "tuned"))
    ids = None
    change = {}
    for dtype in ("fp32", "bf16"):
        model = LocalModel(tiny_lm, tmp_path, device="cpu", cpu_dtype=dtype)
        tuned = model.with_adapter(folder)
        ids = ids or model.tokenizer.apply_chat_template(
            QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad(), model.hold() as base:
            plain = base(**ids).logits[0, -1].float()
        with torch.no_grad(), tuned.hold() as weights:
            change[dtype] = weights(**ids).logits[0, -1].float() - plain
        assert change[dtype].abs().max() > 0.05, f"the adapter changes the {dtype} model"
        assert complete(tuned, QUESTION, max_new_tokens=4) is not None
    similarity = torch.nn.functional.cosine_similarity(change["fp32"], change["bf16"], dim=0)
    assert similarity > 0.95, f"the same adapter on either dtype changes the logits alike ({similarity:.3f})"


def test_prefix_cache_reuses_the_shared_prompt_and_answers_the_same(tiny_lm: str, tmp_path: Path) -> None:
    cached = LocalModel(tiny_lm, tmp_path, device="cpu", cpu_dtype="fp32")
    plain = LocalModel(tiny_lm, tmp_path, device="cpu", cpu_dtype="fp32", prefix_cache=False)
    follow_up = [*QUESTION, {"role": "assistant", "content": "page"}, {"role": "user", "content": "and the table"}]
    for messages in (QUESTION, follow_up, QUESTION):
        assert complete(cached, messages, max_new_tokens=6) == complete(plain, messages, max_new_tokens=6)
    prefix = cached._weights.prefix
    assert prefix.cache is not None and plain._weights.prefix.cache is None
    ids = cached._encode(follow_up)["input_ids"]
    cache = prefix.take("", ids)
    assert cache is not None and cache.get_seq_length() >= cached.count_tokens(QUESTION) - 1
    assert prefix.take("", ids) is None, "a cache is handed to one generation at a time"


def test_replies_are_decoded_in_the_callers_thread_as_generate_would(tiny_lm: str, tmp_path: Path) -> None:
    import threading

    import torch

    model = LocalModel(tiny_lm, tmp_path, device="cpu", cpu_dtype="fp32", prefix_cache=False)
    threads: set[int] = set()
    hook = model.model.register_forward_pre_hook(lambda *_: threads.add(threading.get_ident()))
    try:
        text = complete(model, QUESTION, max_new_tokens=12)
    finally:
        hook.remove()
    assert threads == {threading.get_ident()}, "no helper thread: a second OpenMP team slows every step on a CPU"
    ids = model._encode(QUESTION)
    with torch.no_grad():
        out = model.model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=model.tokenizer.eos_token_id)
    assert text == model.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)

    # a reply the caller stops reading: its grad mode is its own meanwhile, and the next reply is whole
    stream = model.stream(QUESTION, max_new_tokens=12)
    next(stream)
    assert torch.is_grad_enabled()
    stream.close()
    assert complete(model, QUESTION, max_new_tokens=12) == text
