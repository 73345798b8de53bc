"""Chat models behind one small interface, and the local transformers backend.

Everything above this module (retrieval, prompts, the agent, the app) talks to
a :class:`ChatModel`: count the tokens of a conversation, and stream a reply.
The ``openai`` backend (:mod:`assistant.openai_model`, any OpenAI-compatible
server) implements the same methods; :mod:`assistant.backends` picks one.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from assistant.errors import AssistantError
from finetune.adapters import check_fits
from finetune.base_model import load_chat_tokenizer, render_chat, resolve_model_path, unloadable
from finetune.errors import FinetuneError
from ingest.embedding import pick_device

Message = dict[str, Any]  # role, content; tool_calls / name / tool_call_id in agent transcripts
Schema = dict[str, Any]  # an OpenAI-style function schema


class ChatModel(Protocol):
    """What the assistant needs from a model.

    ``supports_tools`` says whether the chat template renders tool schemas
    (``tools=``), tool calls and ``tool`` messages itself; when it does not, the
    agent writes them into the prompt in its own documented format.
    """

    name: str
    context_window: int
    supports_tools: bool

    def count_tokens(self, messages: list[Message], tools: list[Schema] | None = None) -> int:
        """Tokens of ``messages`` rendered with the chat template, generation prompt included."""
        ...

    def count_text(self, text: str) -> int:
        """Tokens of plain ``text``, no template."""
        ...

    def stream(
        self,
        messages: list[Message],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        tools: list[Schema] | None = None,
    ) -> Iterator[str]:
        """Yield the reply to ``messages`` piece by piece."""
        ...


def complete(model: ChatModel, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0) -> str:
    """The full reply text of ``model.stream``."""
    return "".join(model.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature))


class LocalModel:
    """A transformers causal LM with its chat template, optionally with a PEFT adapter.

    Args:
        name: Hugging Face id or folder (the bundled default is converted once).
        home: The data home, where converted models are kept.
        adapter: A PEFT adapter folder, or "" for the base model.
        device: ``auto`` picks CUDA (bf16), MPS or CPU (fp32).
        context_window: Cap on prompt plus answer tokens; the model's own limit also applies.
        repetition_penalty: Above 1.0 discourages the loops small models fall into.

    Raises:
        AssistantError: the model or adapter is missing, or the adapter is for another base.
    """

    def __init__(
        self,
        name: str,
        home: Path,
        adapter: str = "",
        device: str = "auto",
        context_window: int = 2048,
        repetition_penalty: float = 1.0,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = resolve_model_path(name, home)
        if Path(path).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.device = pick_device(device)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = chat_tokenizer(name, path)
        try:
            model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except Exception as e:
            raise AssistantError(unloadable(name, e)) from None
        self._weights = _Weights(model.to(self.device).eval(), name, path)
        self.adapter = ""
        if adapter:
            self._weights.load(adapter)
            self.adapter = adapter
        self.supports_tools = "tools" in str(self.tokenizer.chat_template)
        # Text from users, documents and tools must not smuggle in the template's control tokens.
        specials = {str(t) for t in self.tokenizer.all_special_tokens}
        specials |= {t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special}
        self._specials = sorted((t for t in specials if len(t) > 1), key=len, reverse=True)
        self.name = name
        self.repetition_penalty = repetition_penalty
        limit = getattr(model.config, "max_position_embeddings", None) or context_window
        self.context_window = min(context_window, int(limit))

    @property
    def model(self) -> Any:
        """The torch model: a ``PeftModel`` once any adapter was loaded."""
        return self._weights.model

    def with_adapter(self, adapter: str) -> LocalModel:
        """The same weights answering with another adapter (a folder, or "" for the base model).

        Nothing is copied: the adapter is loaded next to the others already in memory
        and picked for each reply, so switching costs milliseconds after the first load.

        Raises:
            AssistantError: the adapter is missing or was trained for another base model.
        """
        if adapter:
            self._weights.load(adapter)
        view = copy.copy(self)
        view.adapter = adapter
        return view

    @contextlib.contextmanager
    def hold(self) -> Iterator[Any]:
        """The torch model with this view's adapter on, held for the caller alone (to score text, say)."""
        with self._weights.using(self.adapter):
            yield self._weights.model

    def _defuse(self, text: str) -> str:
        for token in self._specials:
            if token in text:
                text = text.replace(token, f"{token[0]}\u200b{token[1:]}")
        return text

    def _encode(self, messages: list[Message], tools: list[Schema] | None = None) -> Any:
        safe = [
            {**m, "content": self._defuse(m["content"])} if m["role"] != "system" and m.get("content") else m
            for m in messages
        ]
        schemas: list[Any] | None = list(tools) if tools else None
        return self.tokenizer.apply_chat_template(
            safe, tools=schemas, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )

    def count_tokens(self, messages: list[Message], tools: list[Schema] | None = None) -> int:
        return int(self._encode(messages, tools)["input_ids"].shape[1])

    def count_text(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(
        self,
        messages: list[Message],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        tools: list[Schema] | None = None,
    ) -> Iterator[str]:
        """Yield the reply piece by piece; closing the iterator early stops the generation too.

        Replies are generated one at a time per loaded model (the adapter is chosen per reply).
        """
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = {k: v.to(self.device) for k, v in self._encode(messages, tools).items()}
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling: dict[str, Any] = {"do_sample": False, "repetition_penalty": self.repetition_penalty}
        if temperature > 0:
            sampling.update(do_sample=True, temperature=temperature, top_p=0.95)
        stop = threading.Event()

        class _Stopped(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                import torch

                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        kwargs = dict(
            inputs,
            streamer=streamer,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.eos_token_id,
            stopping_criteria=StoppingCriteriaList([_Stopped()]),
            **sampling,
        )
        failure: list[BaseException] = []
        weights = self._weights

        def run() -> None:
            try:
                weights.model.generate(**kwargs)
            except BaseException as e:  # surfaced in the caller's thread below
                failure.append(e)
                streamer.end()

        with weights.using(self.adapter):
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            try:
                yield from (piece for piece in streamer if piece)
            finally:  # also when the caller stops reading: end the generation before the next one starts
                stop.set()
                thread.join()
        if failure:
            raise failure[0]


class TemplateOnly:
    """A model's tokenizer and chat template without its weights: counts tokens, renders prompts, never generates.

    Building training data needs the prompts the model will see and their length, not the model.
    """

    def __init__(self, name: str, home: Path, context_window: int = 2048) -> None:
        self.tokenizer = chat_tokenizer(name, resolve_model_path(name, home))
        self.name = name
        self.context_window = context_window
        self.supports_tools = "tools" in str(self.tokenizer.chat_template)

    def count_tokens(self, messages: list[Message], tools: list[Schema] | None = None) -> int:
        text = render_chat(self.tokenizer, messages, list(tools) if tools else None, generation=True)
        return self.count_text(text)

    def count_text(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(
        self,
        messages: list[Message],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        tools: list[Schema] | None = None,
    ) -> Iterator[str]:
        raise AssistantError("this model was loaded without weights and cannot generate")


def chat_tokenizer(name: str, path: str) -> Any:
    """The chat tokenizer of model ``name`` (files at ``path``); a one-line :class:`AssistantError` when unusable."""
    try:
        return load_chat_tokenizer(name, path)
    except FinetuneError as e:
        raise AssistantError(str(e)) from None


class _Weights:
    """One model's weights in memory, shared by every :class:`LocalModel` view, with its loaded adapters.

    Adapters are loaded into one ``PeftModel`` under a key made from their folder
    and file times (a retrained adapter of the same name is a new key); the least
    recently used beyond ``keep`` are unloaded. ``using`` serialises replies: it
    picks the adapter (or turns adapters off for the base model) for one reply.
    """

    def __init__(self, model: Any, name: str, path: str, keep: int = 4) -> None:
        self.model = model
        self.name, self.path, self.keep = name, path, keep
        self.loaded: dict[str, str] = {}  # key -> folder, least recently used first
        self.lock = threading.Lock()

    def key(self, adapter: str) -> str:
        """The key of ``adapter`` (a folder) once checked: it exists and was trained for this base model."""
        try:
            check_fits(adapter, self.name, self.path)
        except FinetuneError as e:
            raise AssistantError(str(e)) from None
        stamp = "".join(f"{f.name}{f.stat().st_mtime_ns}" for f in sorted(Path(adapter).iterdir()) if f.is_file())
        return "a" + hashlib.sha256(f"{Path(adapter).resolve()}\0{stamp}".encode()).hexdigest()[:16]

    def load(self, adapter: str) -> str:
        """Check ``adapter`` against the base model, load it if it is not in memory, and return its key."""
        key = self.key(adapter)
        with self.lock:
            self._load(key, adapter)
        return key

    def _load(self, key: str, adapter: str) -> None:  # with the lock held
        import warnings

        from peft import PeftModel

        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")  # peft's call

        if key in self.loaded:
            self.loaded[key] = self.loaded.pop(key)
            return
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(adapter, adapter_name=key)
            else:
                device = next(self.model.parameters()).device
                self.model = PeftModel.from_pretrained(self.model, adapter, adapter_name=key).to(device).eval()
        except Exception as e:
            raise AssistantError(
                f"adapter {adapter!r} could not be loaded ({type(e).__name__}: {e}): retrain or remove it"
            ) from None
        self.loaded[key] = adapter
        while len(self.loaded) > self.keep:
            oldest = next(iter(self.loaded))
            self.model.delete_adapter(oldest)
            del self.loaded[oldest]

    @contextlib.contextmanager
    def using(self, adapter: str) -> Iterator[None]:
        """Hold the model for one reply, with ``adapter`` (a folder) on, or every adapter off for ""."""
        key = self.key(adapter) if adapter else ""
        with self.lock:
            if key:
                self._load(key, adapter)
                self.model.set_adapter(key)
                yield
            elif self.loaded:
                with self.model.disable_adapter():
                    yield
            else:  # no adapter was ever loaded: the plain base model
                yield
