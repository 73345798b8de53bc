"""Fine-tuning: training data from the ingested documents, LoRA adapters, before/after evaluation."""

__all__: list[str] = []
