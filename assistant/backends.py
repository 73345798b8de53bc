"""The one place that picks a model backend: local transformers weights, or an OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

from assistant.config import AssistantConfig
from assistant.model import LocalModel
from assistant.openai_model import OpenAIModel
from finetune.adapters import Registry


def load_model(config: AssistantConfig, home: Path, adapter: str | None = None) -> LocalModel | OpenAIModel:
    """The configured model (``backend``: local weights, or an OpenAI-compatible server).

    Args:
        config: The ``[assistant]`` settings.
        home: The data home (converted models, the adapter registry).
        adapter: Overrides the configured adapter: ``active`` (the registry's active adapter, if any),
            a registered name, a folder, or "" / ``none`` / ``base`` for the base model.
    """
    folder = Registry(home, config.model).resolve(config.adapter if adapter is None else adapter)
    if config.backend == "openai":
        return OpenAIModel(config, home, folder)
    return LocalModel(
        config.model,
        home,
        folder,
        config.device,
        config.context_window,
        config.repetition_penalty,
        cpu_dtype=config.cpu_dtype,
    )


def load_into_server(config: AssistantConfig, home: Path, name: str, folder: Path) -> bool:
    """Load adapter ``name`` into the model server before it is activated, when the backend serves adapters.

    Only the ``openai`` backend with ``load_adapters`` does; the local backend loads adapters per reply.

    Returns:
        Whether the server was asked (and loaded it).

    Raises:
        AssistantError: the server could not load it.
    """
    if config.backend != "openai" or not config.load_adapters:
        return False
    OpenAIModel(config, home, str(folder)).load_adapter(name, str(folder.resolve()))
    return True
