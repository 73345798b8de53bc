"""General-ability retention: perplexity on held-out general text, base model and adapter side by side.

An adapter that makes the model an expert on a handbook should not make it worse
at plain English. ``general.txt`` (shipped, written for this check, about rivers,
bread, chess and the like) is text no training set here contains; the same model
is scored with its adapter enabled and disabled, so the two numbers differ only
by the adapter.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

GENERAL_TEXT = Path(__file__).with_name("general.txt")


def perplexity(model: Any, tokenizer: Any, text: str, window: int = 512) -> float:
    """Token-level perplexity of ``text`` under ``model``, in non-overlapping windows of ``window`` tokens."""
    import torch

    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            piece = ids[start : start + window].unsqueeze(0).to(device)
            if piece.shape[1] < 2:
                break
            logits = model(input_ids=piece).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), piece[:, 1:].flatten(), reduction="sum")
            total += float(loss)
            count += piece.shape[1] - 1
    return math.exp(total / max(count, 1))


def retention(peft_model: Any, tokenizer: Any, text: str | None = None) -> dict[str, float]:
    """Perplexity of general text with the adapter disabled (base) and enabled (tuned), and their ratio.

    Args:
        peft_model: A ``PeftModel`` (the base model with the adapter loaded).
        tokenizer: Its tokenizer.
        text: The held-out text; the shipped general text by default.
    """
    text = text if text is not None else GENERAL_TEXT.read_text(encoding="utf-8")
    peft_model.eval()
    with peft_model.disable_adapter():
        base = perplexity(peft_model, tokenizer, text)
    tuned = perplexity(peft_model, tokenizer, text)
    return {"base": round(base, 3), "tuned": round(tuned, 3), "ratio": round(tuned / base, 4)}
