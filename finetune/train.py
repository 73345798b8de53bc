"""The LoRA training recipe: one readable loop around peft, for one device or several under ``accelerate launch``.

Run it as ``ragtune finetune`` (or ``accelerate launch -m assistant finetune`` for
several GPUs). The pieces, in the order :meth:`LoRARecipe.setup` builds them:

- ``_setup_model``: the base model (bf16 on CUDA, fp32 on CPU; 4-bit for QLoRA),
  LoRA or DoRA on all linear layers, optional gradient checkpointing;
- ``_setup_data``: chats tokenized with the model's own template, labels only on
  the assistant's tokens, batches grouped by length and padded to their longest;
- ``_setup_optimizer``: AdamW on the adapter's parameters, warm-up then cosine.

:meth:`LoRARecipe.train` is the loop: gradient accumulation, validation every
``eval_every`` steps, early stopping, a checkpoint after each validation (what
``--resume`` continues from), metrics to JSONL (and TensorBoard when installed).
The adapter is written to a temporary folder and moved into the registry in one
rename, so a failed, cancelled or killed run never leaves half an adapter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.adapters import ADAPTER_FILE, NO_ADAPTER, STARTER, Registry, check_fits, starter_fits, write_json
from finetune.base_model import fingerprint, load_chat_tokenizer, render_chat, resolve_model_path, unloadable
from finetune.config import FinetuneConfig
from finetune.errors import FinetuneError
from ingest.embedding import cpu_has_bf16

IGNORE = -100  # label of tokens the loss skips


# data ---------------------------------------------------------------------------------


def encode(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of a chat and its labels: the assistant's tokens (closing tag included), ``IGNORE`` elsewhere.

    Each assistant turn's span is found by rendering the chat up to it with and
    without the turn, so any template works whose earlier turns render the same
    when later ones follow; a turn for which that is not so is not learned.
    """
    text = render_chat(tokenizer, messages, tools, generation=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i == 0:
            continue
        before = render_chat(tokenizer, messages[:i], tools, generation=True)
        through = render_chat(tokenizer, messages[: i + 1], tools, generation=False)
        if through.startswith(before) and text.startswith(through):
            spans.append((len(before), len(through)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [
        token if any(start <= offset[0] < end for start, end in spans) else IGNORE
        for token, offset in zip(ids, encoded["offset_mapping"])
    ]
    return ids, labels


def read_split(path: Path) -> list[dict[str, Any]]:
    """The examples of one split file written by ``ragtune dataset build`` (empty when absent)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_batches(
    lengths: list[int], batch_size: int, batching: str, seed: int, batch_tokens: int = 0
) -> list[list[int]]:
    """Indices in batches, shuffled with ``seed``.

    ``length`` sorts each window of 50 batches by length so a batch pads little,
    and closes a batch early when its padded size would pass ``batch_tokens``
    (long examples go in smaller batches, so memory stays flat); then the batches
    are shuffled. ``padded`` keeps the shuffled order and fixed-size batches.
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    rng.shuffle(order)
    batches: list[list[int]] = []
    if batching != "length":
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        window = batch_size * 50
        order = [
            i for w in range(0, len(order), window) for i in sorted(order[w : w + window], key=lengths.__getitem__)
        ]
        current: list[int] = []
        longest = 0
        for i in order:
            wider = max(longest, lengths[i])
            if current and (len(current) >= batch_size or (batch_tokens and wider * (len(current) + 1) > batch_tokens)):
                batches.append(current)
                current, wider = [], lengths[i]
            current.append(i)
            longest = wider
        if current:
            batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(items: list[tuple[list[int], list[int]]], pad_id: int, pad_to: int | None = None) -> dict[str, Any]:
    """Right-padded tensors: to the batch's longest item, or to ``pad_to``."""
    import torch

    width = pad_to or max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (tokens, targets) in enumerate(items):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(targets)] = torch.tensor(targets)
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def dataset_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("train.jsonl", "val.jsonl"):
        if (folder / name).exists():
            digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


# the recipe ---------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a finished run produced."""

    name: str
    adapter: Path | None  # None when the run was cancelled
    stopped: str  # "completed", "early_stop" or "cancelled"
    steps: int
    train_loss: float | None
    val_loss: float | None
    best_step: int | None
    tokens: int
    seconds: float
    metadata: dict[str, Any]
    main: bool = True  # False in the other processes of a multi-process run (they publish nothing)


class LoRARecipe:
    """Single-device LoRA fine-tuning (DDP under ``accelerate launch``), with checkpoints and early stopping.

    Args:
        config: The training settings.
        model: The base model's name as the assistant names it (Hugging Face id or folder).
        home: The data home (runs under ``home/runs``, adapters under ``home/adapters``).
        dataset: Folder holding ``train.jsonl`` and ``val.jsonl``.
        name: The run's and adapter's name.
        progress: Show a progress bar.
        should_stop: Polled every step; True cancels the run (a checkpoint is kept for ``--resume``).
        on_metrics: Called with each metrics row as it is logged.
    """

    def __init__(
        self,
        config: FinetuneConfig,
        model: str,
        home: Path,
        dataset: Path,
        name: str,
        progress: bool = True,
        should_stop: Callable[[], bool] | None = None,
        on_metrics: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config, self.model_name, self.home, self.dataset, self.name = config, model, home, dataset, name
        self.run_dir = home / "runs" / name
        self.progress, self.should_stop, self.on_metrics = progress, should_stop, on_metrics
        self.step = 0
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.bad_evals = 0
        self.tokens_seen = 0
        self.seconds = 0.0
        self.keep_logits = True
        self.autocast = False
        self.too_long = 0  # examples over max_tokens, left out
        self.init_from = "none"  # the adapter training started from

    # setup ----------------------------------------------------------------------------

    def setup(self, resume: bool = False) -> None:
        from accelerate import Accelerator

        self.accelerator = Accelerator(cpu=self.config.device == "cpu")
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        self.path = resolve_model_path(self.model_name, self.home)
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        if resume:
            self._load_checkpoint()

    def _dtype(self) -> Any:
        import torch

        wanted = self.config.precision
        cuda = self.device.type == "cuda"
        if wanted == "auto" and cuda:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if wanted == "auto":
            self.autocast = self.device.type == "cpu" and cpu_has_bf16()
            return torch.float32
        if wanted == "bf16" and self.device.type == "cpu":
            self.autocast = True  # fp32 weights, bf16 matmuls: 1.15x faster a run on a CPU with AVX512-BF16
            return torch.float32
        if wanted in ("bf16", "fp16") and not cuda:
            raise FinetuneError(f"precision={wanted} needs a CUDA GPU (bf16 also runs on CPU): use auto or fp32")
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[wanted]

    def _setup_model(self) -> None:
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")  # peft's, not ours
        if Path(self.path).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        torch.manual_seed(self.config.seed)
        self.dtype = self._dtype()
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.config.quantize == "4bit":
            kwargs.update(self._quantization())
        self.tokenizer = load_chat_tokenizer(self.model_name, self.path)
        try:
            model: Any = AutoModelForCausalLM.from_pretrained(self.path, **kwargs)
        except FinetuneError:
            raise
        except Exception as e:
            raise FinetuneError(unloadable(self.model_name, e)) from None
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0
        if self.config.quantize:
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=self.config.gradient_checkpointing
            )
        elif self.config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        model.config.use_cache = False
        init = self._init_adapter()
        if init:  # go on from an adapter's weights (its rank and target modules with them)
            try:
                start = LoraConfig.from_pretrained(init)
                start.lora_dropout = self.config.lora_dropout  # a setting of this run, not of the adapter
                model = PeftModel.from_pretrained(model, init, is_trainable=True, config=start)
            except Exception as e:
                raise FinetuneError(
                    f"init_adapter {self.config.init_adapter!r} cannot be loaded ({type(e).__name__}): "
                    "set init_adapter = none to train from fresh weights"
                ) from None
        else:
            targets = list(self.config.target_modules)
            lora = LoraConfig(
                r=self.config.lora_r,
                lora_alpha=self.config.lora_alpha,
                lora_dropout=self.config.lora_dropout,
                target_modules="all-linear" if targets == ["all-linear"] else targets,
                use_dora=self.config.dora,
                task_type="CAUSAL_LM",
            )
            try:
                model = get_peft_model(model, lora)
            except ValueError as e:
                raise FinetuneError(f"LoRA cannot be applied ({e}): check target_modules") from None
        model.peft_config["default"].base_model_name_or_path = self.model_name  # the name users give, not a cache path
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.total_params = sum(p.numel() for p in model.parameters())
        self.model = model if self.config.quantize else model.to(self.device)

    def _init_adapter(self) -> str:
        """The adapter folder training starts from, "" for fresh weights (``init_adapter``).

        The default, ``starter``, applies only to the model the starter was trained for;
        for any other model training starts from fresh weights, and says so.

        Raises:
            FinetuneError: a named adapter that does not exist or was trained for another model.
        """
        value = self.config.init_adapter
        self.init_from = "none"
        if value in NO_ADAPTER:
            return ""
        if value == STARTER and not starter_fits(self.model_name):
            if self.progress and self.is_main:
                print(f"init_adapter: no starter adapter for {self.model_name}; training from fresh weights")
            return ""
        folder = Registry(self.home, self.model_name).resolve(value)
        check_fits(folder, self.model_name, str(self.path))
        self.init_from = value
        return folder

    def _quantization(self) -> dict[str, Any]:
        import torch

        if self.device.type != "cuda":
            raise FinetuneError(
                "QLoRA (quantize=4bit) needs a CUDA GPU: unset quantize to train in fp32 on this machine"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise FinetuneError("QLoRA needs bitsandbytes: `pip install bitsandbytes`, or unset quantize") from None
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            ),
            "device_map": {"": self.accelerator.local_process_index},
            "dtype": compute,
        }

    def _setup_data(self) -> None:
        self.train_items = self._tokenized("train")
        self.val_items = self._tokenized("val")
        if not self.train_items:
            raise FinetuneError(
                f"no training examples in {self.dataset}: run `ragtune dataset build` first (after `ragtune ingest`)"
            )
        self.lengths = [len(ids) for ids, _ in self.train_items]
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        batching = (self.config.batch_size, self.config.batching)
        per_epoch = (
            min(
                len(
                    make_batches(
                        self.lengths, *batching, seed=self.config.seed * 1000 + e, batch_tokens=self.config.batch_tokens
                    )
                )
                for e in range(3)
            )
            // world
        )  # token-capped batching varies a little by epoch: every epoch uses this many
        if per_epoch < 1:
            raise FinetuneError(f"too few training examples ({len(self.train_items)}) for {world} processes")
        self.batches_per_epoch = per_epoch
        self.rank, self.world = rank, world
        accum = self.config.grad_accum
        self.total_steps = self.config.steps or max(1, math.ceil(self.config.epochs * per_epoch / accum))
        self._epoch_cache: dict[int, list[list[int]]] = {}

    def _tokenized(self, split: str) -> list[tuple[list[int], list[int]]]:
        items = []
        for example in read_split(self.dataset / f"{split}.jsonl"):
            ids, labels = encode(self.tokenizer, example["messages"], example.get("tools"))
            if len(ids) > self.config.max_tokens:
                self.too_long += 1
            elif any(label != IGNORE for label in labels):
                items.append((ids, labels))
        return items

    def _setup_optimizer(self) -> None:
        import torch
        from transformers import get_cosine_schedule_with_warmup

        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        warmup = round(self.config.warmup * self.total_steps)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, warmup, self.total_steps)

    # one step -------------------------------------------------------------------------

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epoch_cache:
            batches = make_batches(
                self.lengths,
                self.config.batch_size,
                self.config.batching,
                self.config.seed * 1000 + epoch,
                self.config.batch_tokens,
            )
            self._epoch_cache = {epoch: batches[self.rank :: self.world][: self.batches_per_epoch]}
        return self._epoch_cache[epoch]

    def _micro_batches(self, step: int) -> list[dict[str, Any]]:
        """The batches that make optimizer step ``step`` (grad_accum of them)."""
        out = []
        for j in range(self.config.grad_accum):
            micro = step * self.config.grad_accum + j
            epoch, index = divmod(micro, self.batches_per_epoch)
            items = [self.train_items[i] for i in self._epoch_batches(epoch)[index]]
            pad_to = self.config.max_tokens if self.config.batching == "padded" else None
            out.append(collate(items, self.pad_id, pad_to))
        return out

    def _loss_step(self, batch: dict[str, Any]) -> tuple[Any, int]:
        """Summed cross-entropy over the batch's label tokens, and how many there are.

        Only positions that predict a label go through the output layer
        (``logits_to_keep``): with loss on the assistant's tokens alone, that skips
        most of the vocabulary projection, a fifth of a small model's compute.
        """
        import torch

        batch = {k: v.to(self.device) for k, v in batch.items()}
        targets = batch["labels"][:, 1:]
        keep = (targets != IGNORE).any(dim=0).nonzero().flatten()  # positions whose next token is learned
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            if self.keep_logits:
                try:
                    logits = self.model(**inputs, logits_to_keep=keep).logits
                    targets = targets[:, keep]
                except TypeError:  # a model without logits_to_keep
                    self.keep_logits = False
            if not self.keep_logits:
                logits = self.model(**inputs).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum"
        )
        return loss, int((targets != IGNORE).sum())

    def validate(self) -> float | None:
        """Mean token loss on the validation split (None without one)."""
        import torch

        if not self.val_items:
            return None
        self.model.eval()
        total = torch.zeros(2, device=self.device)
        order = sorted(range(len(self.val_items)), key=lambda i: len(self.val_items[i][0]))
        mine = order[self.rank :: self.world]
        with torch.no_grad():
            for first in range(0, len(mine), self.config.batch_size):
                items = [self.val_items[i] for i in mine[first : first + self.config.batch_size]]
                loss, count = self._loss_step(collate(items, self.pad_id))
                total += torch.stack([loss.detach().float(), torch.tensor(float(count), device=self.device)])
        total = self.accelerator.reduce(total, reduction="sum")
        self.model.train()
        return float(total[0] / total[1].clamp(min=1))

    # the loop -------------------------------------------------------------------------

    def train(self) -> TrainResult:
        from tqdm import tqdm

        config = self.config
        self.model.train()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        writer = self._tensorboard()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=f"finetune {self.name}",
            unit="step",
            disable=not (self.progress and self.is_main),
            dynamic_ncols=True,
        )
        stopped, train_loss = "completed", None
        started = time.perf_counter() - self.seconds
        try:
            while self.step < self.total_steps:
                if self.should_stop and self.should_stop():
                    stopped = "cancelled"
                    break
                tick = time.perf_counter()
                micro = self._micro_batches(self.step)
                step_tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
                loss_sum = 0.0
                for j, batch in enumerate(micro):
                    last = j == len(micro) - 1
                    context = self.accelerator.no_sync(self.model) if not last else _nothing()
                    with context:
                        loss, _ = self._loss_step(batch)
                        self.accelerator.backward(loss / max(step_tokens, 1))
                    loss_sum += float(loss.detach())
                    self.tokens_seen += int(batch["attention_mask"].sum())
                grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                elapsed = time.perf_counter() - tick
                train_loss = loss_sum / max(step_tokens, 1)
                tokens = sum(int(b["attention_mask"].sum()) for b in micro)
                row = {
                    "step": self.step,
                    "total_steps": self.total_steps,
                    "epoch": round(self.step * config.grad_accum / self.batches_per_epoch, 3),
                    "loss": round(train_loss, 5),
                    "lr": self.scheduler.get_last_lr()[0],
                    "grad_norm": round(float(grad_norm), 4) if grad_norm is not None else None,
                    "tokens_per_s": round(tokens * self.world / elapsed, 1),
                }
                self._log(row, writer)
                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{row['tokens_per_s']:.0f}", refresh=False)
                bar.update(1)
                if self.step % config.eval_every == 0 or self.step == self.total_steps:
                    self.seconds = time.perf_counter() - started
                    if self._evaluate(writer, bar) and self.step < self.total_steps:
                        stopped = "early_stop"  # (patience running out at the last step is just the end)
                        break
        except KeyboardInterrupt:
            self.seconds = time.perf_counter() - started
            self._save_checkpoint()
            raise FinetuneError(
                f"interrupted at step {self.step}: `ragtune finetune --resume {self.name}` continues from the "
                "last checkpoint; the active adapter is unchanged"
            ) from None
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        self.seconds = time.perf_counter() - started
        if stopped == "cancelled":
            self._save_checkpoint()
            return self._result(stopped, None, train_loss)
        if self.best_step is not None and self.is_main:  # only the main process writes the adapter
            self._load_best()
        adapter = self._publish(stopped, train_loss) if self.is_main else None
        self.accelerator.wait_for_everyone()
        return self._result(stopped, adapter, train_loss)

    def _evaluate(self, writer: Any, bar: Any) -> bool:
        """Validate, keep the best adapter, checkpoint; True when early stopping fires."""
        val = self.validate()
        if val is not None:
            improved = val < self.best_loss - 1e-4
            if improved:
                self.best_loss, self.best_step, self.bad_evals = val, self.step, 0
                if self.is_main:
                    _save_torch(self._adapter_state(), self.run_dir / "best.pt")
            else:
                self.bad_evals += 1
            self._log({"step": self.step, "val_loss": round(val, 5), "best": improved}, writer)
            bar.set_postfix(val=f"{val:.3f}", refresh=False)
        self._save_checkpoint()
        return bool(val is not None and self.config.patience and self.bad_evals >= self.config.patience)

    def _log(self, row: dict[str, Any], writer: Any) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    writer.add_scalar(key, value, row["step"])
        if self.on_metrics:
            self.on_metrics(row)

    def _tensorboard(self) -> Any:
        if not self.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    # checkpoints ----------------------------------------------------------------------

    def _adapter_state(self) -> dict[str, Any]:
        from peft import get_peft_model_state_dict

        model = self.accelerator.unwrap_model(self.model)
        state = get_peft_model_state_dict(model, save_embedding_layers=False)
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    def _save_checkpoint(self) -> None:
        import torch

        if not self.is_main:
            return
        state = {
            "adapter": self._adapter_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "tokens_seen": self.tokens_seen,
            "seconds": self.seconds,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        _save_torch(state, self.run_dir / "checkpoint.pt")

    def _load_checkpoint(self) -> None:
        import torch
        from peft import set_peft_model_state_dict

        path = self.run_dir / "checkpoint.pt"
        if not path.exists():
            raise FinetuneError(f"run {self.name!r} has no checkpoint yet: start it again without --resume")
        state = torch.load(path, map_location="cpu", weights_only=False)
        set_peft_model_state_dict(self.accelerator.unwrap_model(self.model), state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best_loss, self.best_step = state["step"], state["best_loss"], state["best_step"]
        self.bad_evals, self.tokens_seen, self.seconds = state["bad_evals"], state["tokens_seen"], state["seconds"]
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        metrics = self.run_dir / "metrics.jsonl"
        if self.is_main and metrics.exists():  # rows logged after the checkpoint are redone
            rows = [line for line in metrics.read_text().splitlines() if json.loads(line)["step"] <= self.step]
            metrics.write_text("".join(r + "\n" for r in rows))

    def _load_best(self) -> None:
        import torch
        from peft import set_peft_model_state_dict

        best = torch.load(self.run_dir / "best.pt", map_location="cpu", weights_only=True)
        set_peft_model_state_dict(self.accelerator.unwrap_model(self.model), best)

    # output ---------------------------------------------------------------------------

    def _publish(self, stopped: str, train_loss: float | None) -> Path:
        """Write the adapter and its ``adapter.json`` beside the registry, then move it in with one rename."""
        from finetune.plot import plot_losses

        registry = Registry(self.home)
        tmp = registry.root / f".{self.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.unwrap_model(self.model).save_pretrained(tmp, save_embedding_layers=False)
        rows = [json.loads(line) for line in (self.run_dir / "metrics.jsonl").read_text().splitlines()]
        shutil.copy(self.run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
        plot_losses(rows, tmp / "loss.png")
        write_json(tmp / ADAPTER_FILE, self._metadata(stopped, train_loss))
        return registry.add(self.name, tmp)

    def _metadata(self, stopped: str, train_loss: float | None) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ragtune_version = version("ragtune")
        except PackageNotFoundError:
            ragtune_version = "unknown"
        report_file = self.dataset / "report.json"
        report = json.loads(report_file.read_text()) if report_file.exists() else {}
        val = self.best_loss if self.best_step is not None else None
        return {
            "name": self.name,
            "base_model": self.model_name,
            "base_model_hash": fingerprint(self.path),
            "dataset": {
                "path": str(self.dataset.resolve()),
                "hash": dataset_hash(self.dataset),
                "train": len(self.train_items),
                "val": len(self.val_items),
                "test": len(read_split(self.dataset / "test.jsonl")),
                "too_long": self.too_long,
                "sources": report.get("sources", {}),
            },
            "hyperparameters": dataclasses.asdict(self.config),
            "init_adapter": self.init_from,
            "metrics": {
                "stopped": stopped,
                "steps": self.step,
                "train_loss": round(train_loss, 5) if train_loss is not None else None,
                "val_loss": round(val, 5) if val is not None else None,
                "best_step": self.best_step,
                "tokens": self.tokens_seen,
                "seconds": round(self.seconds, 1),
                "tokens_per_s": round(self.tokens_seen / self.seconds, 1) if self.seconds else None,
                "trainable_parameters": self.trainable,
                "parameters": self.total_params,
                "device": str(self.device),
                "processes": self.world,
            },
            "evaluation": {},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "ragtune_version": ragtune_version,
        }

    def _result(self, stopped: str, adapter: Path | None, train_loss: float | None) -> TrainResult:
        val = self.best_loss if self.best_step is not None else None
        metadata = json.loads((adapter / ADAPTER_FILE).read_text()) if adapter else {}
        return TrainResult(
            self.name,
            adapter,
            stopped,
            self.step,
            train_loss,
            val,
            self.best_step,
            self.tokens_seen,
            self.seconds,
            metadata,
            self.is_main,
        )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill mid-write keeps the previous file."""
    import torch

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# entry point --------------------------------------------------------------------------

RUN_FILE = "run.json"


def finetune(
    config: FinetuneConfig,
    model: str,
    home: Path,
    dataset: Path,
    *,
    resume: str = "",
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on a built dataset and register it (not activated).

    Args:
        config: Training settings (ignored on resume: the run's own settings are used).
        model: The base model (the assistant's ``model``).
        home: The data home.
        dataset: Folder written by ``ragtune dataset build``.
        resume: The name of an interrupted run to continue from its last checkpoint.
        progress: Show a progress bar.
        should_stop: Polled every step; True cancels (the checkpoint stays for ``--resume``).
        on_metrics: Receives each metrics row.

    Raises:
        FinetuneError: bad settings or data, a missing model, a name already taken, nothing to resume.
    """
    runs = home / "runs"
    if resume:
        run_file = runs / resume / RUN_FILE
        if not run_file.exists():
            known = sorted(p.name for p in runs.iterdir() if (p / RUN_FILE).exists()) if runs.exists() else []
            raise FinetuneError(f"no run named {resume!r} to resume; runs: {', '.join(known) or 'none'}")
        saved = json.loads(run_file.read_text())
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()}
        config = FinetuneConfig(**values)
        model, dataset, name = saved["model"], Path(saved["dataset"]), resume
        if dataset_hash(dataset) != saved["dataset_hash"]:
            raise FinetuneError(
                f"the dataset in {dataset} changed since run {resume!r} started: start a new run instead of resuming"
            )
    else:
        name = config.name or datetime.now().strftime("finetune-%Y%m%d-%H%M%S")
        if Registry(home).path(name).exists():
            raise FinetuneError(f"an adapter named {name!r} exists: choose another name, or remove it first")
        if not (dataset / "train.jsonl").exists():
            raise FinetuneError(f"no dataset in {dataset}: run `ragtune dataset build` first")
        shutil.rmtree(runs / name, ignore_errors=True)
    recipe = LoRARecipe(config, model, home, dataset, name, progress, should_stop, on_metrics)
    recipe.setup(resume=bool(resume))
    if not resume and recipe.is_main:
        recipe.run_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "config": dataclasses.asdict(config),
            "model": model,
            "dataset": str(dataset.resolve()),
            "dataset_hash": dataset_hash(dataset),
        }
        write_json(recipe.run_dir / RUN_FILE, record)
    return recipe.train()
