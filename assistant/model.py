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
from ingest.embedding import cpu_has_bf16, pick_device

CPU_DTYPES = ("auto", "fp32", "bf16")
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
        device: ``auto`` picks CUDA (bf16), MPS (fp32) or CPU (see ``cpu_dtype``).
        context_window: Cap on prompt plus answer tokens; the model's own limit also applies.
        repetition_penalty: Above 1.0 discourages the loops small models fall into.
        cpu_dtype: Weights on CPU: ``auto`` (bf16 where the CPU computes bf16 natively, else fp32),
            ``fp32`` or ``bf16``. Other devices ignore it.
        prefix_cache: On CPU, keep the attention cache of the last reply and reuse the prefix the
            next prompt shares with it (system prompt, sources, history). GPUs run as before.

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
        cpu_dtype: str = "auto",
        prefix_cache: bool = True,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = resolve_model_path(name, home)
        if Path(path).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, cpu_dtype)
        dtype = torch.bfloat16 if self.dtype == "bf16" else torch.float32
        self.tokenizer = chat_tokenizer(name, path)
        try:
            model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except Exception as e:
            raise AssistantError(unloadable(name, e)) from None
        self._weights = _Weights(
            model.to(self.device).eval(), name, path, prefix_cache=prefix_cache and self.device == "cpu"
        )
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
        eos = model.generation_config.eos_token_id
        self._eos = {int(t) for t in (eos if isinstance(eos, list) else [eos]) if t is not None}
        if self.tokenizer.eos_token_id is not None:
            self._eos.add(int(self.tokenizer.eos_token_id))
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

        Tokens are decoded in the caller's thread, not in a thread of their own: on a CPU,
        a second thread running torch ops gets an OpenMP team of its own, and with more
        OpenMP threads than cores every parallel op pays for waking sleeping workers (a
        decoding step of the bundled model took 1.7x as long from a helper thread as from
        the thread that had embedded the question). Replies are generated one at a time per
        loaded model (the adapter is chosen per reply).
        """
        inputs = {k: v.to(self.device) for k, v in self._encode(messages, tools).items()}
        pieces = _pieces(self.tokenizer)
        weights = self._weights
        with weights.using(self.adapter) as key:
            prompt = inputs["input_ids"]
            decoding = _Decoding(weights.model, prompt, weights.prefix.take(key, prompt), self._eos)
            try:
                pieces.put(prompt.cpu())  # skipped as the prompt, as generate() does
                for token in decoding.run(max_new_tokens, self.repetition_penalty, temperature):
                    pieces.put(token.cpu())
                    yield from pieces.take()
                pieces.end()
                yield from pieces.take()
            finally:  # also when the caller stops reading: the cache holds what was computed
                if decoding.whole:
                    weights.prefix.keep(key, decoding.sequences, decoding.cache)


def _pieces(tokenizer: Any) -> Any:
    """A streamer that decodes tokens into text pieces as transformers' ``TextStreamer`` does and keeps them.

    ``take()`` hands over the pieces ready so far (a word is released once it is whole).
    """
    from transformers import TextStreamer

    class Pieces(TextStreamer):
        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.ready: list[str] = []

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                self.ready.append(text)

        def take(self) -> list[str]:
            ready, self.ready = self.ready, []
            return ready

    return Pieces()


class _Decoding:
    """One reply decoded token by token: greedy, or sampled with ``temperature`` and top-p 0.95.

    The same logits processing as ``generate()`` with those settings (repetition penalty
    first), so greedy replies are identical; ``cache`` (a prefix cache, or None) holds the
    keys and values of the first tokens of ``prompt``, and the rest of the prompt is fed
    in one step.
    """

    def __init__(self, model: Any, prompt: Any, cache: Any, eos: set[int]) -> None:
        from transformers import DynamicCache

        self.model, self.eos = model, eos
        self.sequences = prompt
        self.whole = True  # the cache holds the keys and values of sequences[:, :cache length], every layer alike
        self.cache = cache if cache is not None else DynamicCache(config=_base(model).config)

    def run(self, max_new_tokens: int, repetition_penalty: float, temperature: float) -> Iterator[Any]:
        """Yield each new token (a 1-element tensor), ending after an end-of-sequence token or ``max_new_tokens``."""
        import torch
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        processors = LogitsProcessorList()
        if repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
        if temperature > 0:
            processors += [TemperatureLogitsWarper(temperature), TopPLogitsWarper(0.95)]
        keep = {"logits_to_keep": 1} if _takes_logits_to_keep(self.model) else {}
        feed = self.sequences[:, self.cache.get_seq_length() :]
        for _ in range(max_new_tokens):
            self.whole = False  # a step cut short leaves some layers of the cache one token ahead
            with torch.no_grad():  # not held across the yield: the caller's code keeps its own grad mode
                out = self.model(input_ids=feed, cache=self.cache, use_cache=True, **keep)
            self.whole = True
            scores = processors(self.sequences, out.logits[:, -1, :].float())
            if temperature > 0:
                feed = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)
            else:
                feed = scores.argmax(dim=-1, keepdim=True)
            self.sequences = torch.cat([self.sequences, feed], dim=-1)
            yield feed[0]
            if int(feed[0, 0]) in self.eos:
                return


def _base(model: Any) -> Any:
    """The transformers model under a ``PeftModel`` (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _takes_logits_to_keep(model: Any) -> bool:
    import inspect

    return "logits_to_keep" in inspect.signature(_base(model).forward).parameters


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


def pick_dtype(device: str, cpu_dtype: str = "auto") -> str:
    """The weights' dtype on ``device``: ``bf16`` on CUDA, ``fp32`` on MPS, ``cpu_dtype`` resolved on CPU.

    Raises:
        AssistantError: ``cpu_dtype`` is not auto, fp32 or bf16.
    """
    if cpu_dtype not in CPU_DTYPES:
        raise AssistantError(f"cpu_dtype must be auto, fp32 or bf16, got {cpu_dtype!r}")
    if device.startswith("cuda"):
        return "bf16"
    if device != "cpu":
        return "fp32"
    if cpu_dtype == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return cpu_dtype


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

    def __init__(self, model: Any, name: str, path: str, keep: int = 4, prefix_cache: bool = True) -> None:
        self.model = model
        self.name, self.path, self.keep = name, path, keep
        self.loaded: dict[str, str] = {}  # key -> folder, least recently used first
        self.lock = threading.Lock()
        self.prefix = _PrefixCache(enabled=prefix_cache)

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
            device = next(self.model.parameters()).device
            # On CPU the adapter takes the base model's dtype: peft would keep a bf16 model's adapters in fp32.
            autocast = device.type != "cpu"
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(adapter, adapter_name=key, autocast_adapter_dtype=autocast)
            else:
                self.model = PeftModel.from_pretrained(
                    self.model, adapter, adapter_name=key, autocast_adapter_dtype=autocast
                ).to(device)
                self.model.eval()
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
    def using(self, adapter: str) -> Iterator[str]:
        """Hold the model for one reply, with ``adapter`` (a folder) on, or every adapter off for "".

        Yields the adapter's key ("" for the base model).
        """
        key = self.key(adapter) if adapter else ""
        with self.lock:
            if key:
                self._load(key, adapter)
                self.model.set_adapter(key)
                yield key
            elif self.loaded:
                with self.model.disable_adapter():
                    yield key
            else:  # no adapter was ever loaded: the plain base model
                yield key


class _PrefixCache:
    """The attention cache of the last reply's tokens, so the next prompt skips the prefix they share.

    Chats resend the same system prompt, tool schemas and often the same sources and
    history; their keys and values are computed once. The cache is handed to one
    generation at a time (cropped to the shared prefix) and replaced by its result;
    it belongs to one adapter key ("" for the base model).
    """

    min_tokens = 16  # shorter shared prefixes are not worth the bookkeeping

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.key = ""
        self.ids: Any = None  # the tokens the cache holds, 1-D
        self.cache: Any = None

    def take(self, key: str, input_ids: Any) -> Any:
        """The cache cropped to the prefix it shares with ``input_ids`` (batch of one), or None."""
        cache, ids, self.cache, self.ids = self.cache, self.ids, None, None
        if not self.enabled or cache is None or key != self.key or input_ids.shape[0] != 1:
            return None
        prompt = input_ids[0]
        n = min(len(ids), len(prompt) - 1)  # the model must see at least one new token
        if n < self.min_tokens:
            return None
        same = (ids[:n] == prompt[:n].to(ids.device)).int()
        n = int(same.cumprod(0).sum())
        if n < self.min_tokens:
            return None
        cache.crop(n - cache.get_seq_length())
        return cache

    def clear(self) -> None:
        """Forget the cached prompt."""
        self.cache = self.ids = None

    def keep(self, key: str, sequences: Any, cache: Any) -> None:
        """Remember ``cache``, which holds the first tokens of ``sequences`` (batch of one)."""
        if not self.enabled or cache is None or sequences.shape[0] != 1 or not hasattr(cache, "crop"):
            return
        self.key, self.cache = key, cache
        self.ids = sequences[0, : cache.get_seq_length()]
