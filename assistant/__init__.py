"""The assistant: retrieval, the model, the agent and the browser app; home of the `ragtune` command."""

__all__: list[str] = []
