"""Fine-tuning: training data from the ingested documents, LoRA adapters, before/after evaluation."""

from finetune.metrics import exact_match, f1, mean_reciprocal_rank, normalize_answer, recall_at

__all__ = ["exact_match", "f1", "mean_reciprocal_rank", "normalize_answer", "recall_at"]
