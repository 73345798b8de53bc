"""``FinetuneConfig``: settings of ``ragtune dataset build`` and ``ragtune finetune`` (the ``[finetune]`` table).

The base model is the assistant's ``model``: an adapter is only useful on the
model that will serve it, so there is one place to name it.
"""

from __future__ import annotations

import dataclasses

from finetune.errors import FinetuneError

SYNTHETIC = ("extractive", "llm", "none")
ANSWER_STYLES = ("short", "sentence", "rationale")
BATCHING = ("length", "padded")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Data building and LoRA training settings; defaults train on a laptop CPU in minutes."""

    # data: ragtune dataset build
    dataset: str = "default"  # name of the dataset under HOME/datasets (or a folder)
    examples: tuple[str, ...] = ()  # the user's own chat/alpaca/sharegpt JSON(L) files
    synthetic: str = "extractive"  # extractive | llm | none: question/answer pairs from the chunks
    questions_per_chunk: int = 2
    max_chunks: int = 0  # 0: every chunk of the collection
    answer_style: str = "short"  # short (the answer span) | sentence | rationale (sentence, then the answer)
    closed_book: float = 0.5  # share of questions also asked without context (to learn the facts)
    distractors: int = 2  # unrelated chunks next to the right one in context examples (RAFT)
    golden_share: float = 0.8  # context examples that hold the right chunk; the rest only distractors
    tool_examples: int = 40  # agent examples built from the tool registry; 0: none
    max_tokens: int = 1024  # longest example (template included); longer ones are dropped
    val_share: float = 0.1
    test_share: float = 0.1
    seed: int = 0
    # training: ragtune finetune
    name: str = ""  # adapter name; empty: finetune-YYYYMMDD-HHMMSS
    init_adapter: str = "starter"  # start from: starter (when it fits the model) | none | an adapter's name or folder
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # > 0 draws a random mask for every LoRA input: 1.12x the training time on a CPU
    target_modules: tuple[str, ...] = ("all-linear",)
    dora: bool = False  # weight-decomposed LoRA
    quantize: str = ""  # "4bit": QLoRA (CUDA and bitsandbytes)
    precision: str = "auto"  # auto: bf16 on CUDA when supported, bf16 autocast on CPUs with AVX512-BF16/AMX, else fp32
    gradient_checkpointing: bool = False
    batching: str = "length"  # length: length-grouped batches padded to their longest | padded: to max_tokens
    batch_size: int = 8  # most examples in a batch
    batch_tokens: int = 2048  # most padded tokens in a batch (length batching): bounds activation memory
    grad_accum: int = 1
    epochs: float = 2.0
    steps: int = 0  # optimizer steps; 0: epochs decide
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    warmup: float = 0.05  # share of steps with a linear warm-up, then cosine decay
    max_grad_norm: float = 1.0
    eval_every: int = 25  # optimizer steps between validations (and checkpoints)
    patience: int = 3  # validations without improvement before stopping; 0: never stop early
    eval_questions: int = 40  # test questions for the before/after answer evaluation; 0: skip it
    device: str = "auto"

    def __post_init__(self) -> None:
        for key, value, choices in (
            ("synthetic", self.synthetic, SYNTHETIC),
            ("answer_style", self.answer_style, ANSWER_STYLES),
            ("batching", self.batching, BATCHING),
            ("precision", self.precision, PRECISIONS),
            ("quantize", self.quantize, ("", "4bit")),
        ):
            if value not in choices:
                raise FinetuneError(f"{key}={value!r} is not one of {', '.join(repr(c) for c in choices)}")
        if self.val_share < 0 or self.test_share < 0 or self.val_share + self.test_share >= 0.9:
            raise FinetuneError("val_share and test_share must be >= 0 and leave at least 10% for training")
        if not 0 <= self.closed_book <= 1 or not 0 <= self.golden_share <= 1:
            raise FinetuneError("closed_book and golden_share are shares between 0 and 1")
        if self.lora_r < 1 or self.lora_alpha < 1 or not 0 <= self.lora_dropout < 1:
            raise FinetuneError("need lora_r >= 1, lora_alpha >= 1 and 0 <= lora_dropout < 1")
        if self.batch_size < 1 or self.grad_accum < 1 or self.eval_every < 1:
            raise FinetuneError("batch_size, grad_accum and eval_every must be at least 1")
        if self.epochs <= 0 and self.steps <= 0:
            raise FinetuneError("set epochs > 0 or steps > 0")
        if self.learning_rate <= 0 or not 0 <= self.warmup < 1:
            raise FinetuneError("learning_rate must be positive and warmup a share below 1")
        if self.max_tokens < 32 or self.questions_per_chunk < 0 or self.distractors < 0 or self.tool_examples < 0:
            raise FinetuneError(
                "need max_tokens >= 32 and non-negative questions_per_chunk, distractors, tool_examples"
            )
        if self.name and not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise FinetuneError(f"adapter name {self.name!r} may hold only letters, digits, '-', '_' and '.'")
