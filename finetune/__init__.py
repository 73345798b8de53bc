"""Fine-tuning: training data from the ingested documents, LoRA adapters, before/after evaluation."""

from finetune.data import deduplicate, filter_length, read_examples, split, to_messages, write_splits
from finetune.metrics import exact_match, f1, mean_reciprocal_rank, normalize_answer, recall_at

__all__ = [
    "deduplicate",
    "exact_match",
    "f1",
    "filter_length",
    "mean_reciprocal_rank",
    "normalize_answer",
    "read_examples",
    "recall_at",
    "split",
    "to_messages",
    "write_splits",
]
