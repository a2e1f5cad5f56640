"""Hearth's LoRA training loop: length-grouped rows, loss only where it is needed.

Why not ``transformers.Trainer``: on a small model most of the time of the usual path
goes into padding, into the output head and, on a CPU, into many small operations. Here

- each micro-batch holds records of **similar length**, one per row, right-padded to
  the longest (:mod:`backends.training.batching`): little padding, and plain causal
  attention whose cost follows each record's length, not a packed row's;
- the decoder's hidden states are **gathered at the positions that carry loss** and
  only those go through the output head, so the full ``tokens x vocabulary`` logits
  tensor (49k columns for SmolLM2) is never materialised for prompt tokens;
- the loss is the mean over every target token of the optimizer step (not a mean of
  per-micro-batch means), so gradient accumulation does not change the objective;
- LoRA runs through :mod:`backends.training.fast_lora` (no full-width temporaries) and
  AdamW as one fused kernel: on a CPU, small elementwise ops were a third of a step;
- a bf16 run casts the frozen weights once and keeps attention in fp32 on a CPU
  (:mod:`backends.training.precision`);
- a CPU run long enough to pay for it compiles its decoder layers after measuring its
  first steps, and keeps them only if they measure faster
  (:mod:`backends.training.compiled`).

Runs are resumable from a checkpoint (:mod:`backends.training.checkpoint`); a Teach run
can stop early, at an epoch's end, once :attr:`Trainer.stop_check` says it has learned.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.finetune import protocol as tp
from app.finetune.estimate import training_seconds, worth_compiling
from app.finetune.plan import eval_interval
from app.finetune.runs.reports import MeasuredEstimate
from app.finetune.settings import LoraSettings
from backends.training import checkpoint
from backends.training.batching import IGNORE, Batch, Plan, pack, within_budget
from backends.training.compiled import LayerCompiler
from backends.training.data import Tokenized
from backends.training.fast_lora import fuse_lora
from backends.training.precision import cast_frozen, drop_frozen_casts, use_fp32_attention

Emit = Callable[[Any], None]
# With checkpoint_every 0, a checkpoint after each this many seconds of training: a
# killed run loses at most this much, and a short run pays for none.
CHECKPOINT_SECONDS = 120.0


class Outcome(StrEnum):
    """How :meth:`Trainer.run` ended."""

    FINISHED = "finished"
    """Every step ran (or the stop check ended training early, as planned)."""
    CANCELLED = "cancelled"
    """Stopped on request, after saving a checkpoint."""


def lr_at(step: int, total_steps: int, settings: LoraSettings) -> float:
    """Linear warmup to the peak, then cosine decay to ``min_lr_ratio`` of it."""
    peak = settings.learning_rate
    warmup = int(round(total_steps * settings.warmup_ratio))
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = settings.min_lr_ratio
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: CUDA's max allocated, else the peak RSS."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)
    except ImportError:  # Windows
        import psutil

        return int(getattr(psutil.Process().memory_info(), "peak_wset", 0))


def _adamw(params: list[torch.Tensor], settings: LoraSettings) -> torch.optim.AdamW:
    """AdamW as one fused kernel per step where the device has it: the per-parameter
    loop's dozen small ops over ~400 LoRA tensors were a tenth of a CPU step."""
    lr, decay = settings.learning_rate, settings.weight_decay
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay, fused=True)
    except RuntimeError:
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay, foreach=True)


class Trainer:
    def __init__(self, model: Any, train: list[Tokenized], val: list[Tokenized],
                 settings: LoraSettings, run_dir: Path, emit: Emit,
                 cancel: threading.Event, device: torch.device,
                 autocast_dtype: torch.dtype | None = None, compile_mode: str = "off") -> None:
        self.model = model
        self.train_records = train
        self.val_records = val
        self.settings = settings
        self.run_dir = run_dir
        self.emit = emit
        self.cancel = cancel
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.plan = Plan(len(train), settings, [len(r.ids) for r in train])
        fuse_lora(model)
        if device.type == "cpu":
            use_fp32_attention(model)
        self._cast: tuple[torch.dtype, torch.Tensor] | None = None  # (dtype, head weight)
        # Activation memory follows the padded tokens of one forward pass: a micro-batch
        # of long records is run in parts of at most this many (the gradient is the same).
        lengths = [len(r.ids) for r in train] or [1]
        self.token_budget = max(max(lengths), settings.batch_size * sum(lengths) // len(lengths))
        base = model.get_base_model()
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()
        # "auto": compile when measured worth it (see compiled.py); "on" forces it;
        # anything else (an unknown value too, as for the dtype) trains eager.
        self.compile_mode = compile_mode
        self.compiler = LayerCompiler(self.decoder.layers)
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.optimizer = _adamw(list(self.params.values()), settings)
        total = self.plan.total_steps
        self.eval_every = eval_interval(settings, total)
        # 0: by training time, not steps: a two-minute run needs no checkpoint at all,
        # and checkpointing each of a 12-step run's steps cost 94 of its 525 s (measured).
        self.checkpoint_every = settings.checkpoint_every
        self._checkpointed_at = 0.0  # training seconds at the last checkpoint
        self.step = 0
        self.elapsed = 0.0
        self.trained_tokens = 0
        self.history: list[dict[str, float]] = []
        self.val_history: list[dict[str, float]] = []
        self.measured_estimate: MeasuredEstimate | None = None
        # Seconds of the run outside this loop (loading before it, checks and export
        # after it), added to the measured estimate so that it covers the whole run.
        self.overhead_s = 0.0
        # Asked at each epoch's end: a reason to stop now (Teach:
        # every correction is answered), or None to go on.
        self.stop_check: Callable[[], str | None] | None = None
        self.stopped_early: str | None = None

    # ------------------------------------------------------------------ math

    @property
    def shape_multiple(self) -> int:
        """What :func:`pack` rounds shapes up to: 16 for bf16 on a CPU, where each new
        matmul shape costs a kernel compile (fp32 has no such cost, so no padding)."""
        return 16 if self.autocast_dtype is not None and self.device.type == "cpu" else 1

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        if self._cast is None or self._cast[0] != self.autocast_dtype:
            # The frozen weights in the compute dtype once, not a cast per matmul.
            cast_frozen(self.model, self.autocast_dtype)
            self._cast = (self.autocast_dtype, self.head.weight.detach().to(self.autocast_dtype))
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def release_casts(self) -> None:
        """Free the low-precision copies of the frozen weights (training is over)."""
        drop_frozen_casts(self.model)
        self._cast = None

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._cast is not None and torch.is_autocast_enabled(self.device.type):
            return F.linear(hidden, self._cast[1], self.head.bias)
        return self.head(hidden)

    def batch_loss_sum(self, batch: Batch) -> torch.Tensor:
        """Sum of cross-entropy over the batch's target tokens (head on targets only)."""
        with self._autocast():
            hidden = self.decoder(input_ids=batch.input_ids.to(self.device),
                                  position_ids=batch.position_ids.to(self.device),
                                  use_cache=False).last_hidden_state
            picked = hidden.flatten(0, 1).index_select(0, batch.predict_at.to(self.device))
            logits = self._head(picked)
        return F.cross_entropy(logits.float(), batch.targets.to(self.device), reduction="sum",
                               ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(self, limit: int | None = None) -> float:
        """Mean loss per target token over the validation records (the first ``limit``)."""
        self.model.eval()
        total, count = 0.0, 0
        b = self.settings.batch_size
        records = self.val_records[:limit] if limit else self.val_records
        records = sorted(records, key=lambda r: len(r.ids))  # little padding; same sum
        chunks = [records[i:i + b] for i in range(0, len(records), b)]
        with self.compiler.eager():
            for batch in (pack(rows, self.shape_multiple) for c in chunks
                          for rows in within_budget(c, self.token_budget)):
                total += float(self.batch_loss_sum(batch))
                count += batch.n_targets
        self.model.train()
        return total / max(1, count)

    def step_speed(self, dtype: torch.dtype | None, max_tokens: int = 256) -> float:
        """Tokens per second of a forward and backward pass in ``dtype`` over the run's
        first micro-batch, its rows cut so that they hold at most ``max_tokens`` (a
        micro-batch's shape, not one record's: at a single short record bf16 gains
        little, at four it gains more). For the dtype probe; leaves no gradient, no
        weight change and the random state as it was."""
        rows = [self.train_records[i] for i in self.plan.micro_batch(0)]
        width = max(8, max_tokens // len(rows))
        pieces = [Tokenized(ids=r.ids[:width], target=r.target[:width], line=r.line)
                  for r in rows]
        for piece in pieces:
            if not any(piece.target[1:]):
                piece.target[-1] = True
        rng, saved = torch.get_rng_state(), self.autocast_dtype
        self.autocast_dtype = dtype
        try:
            batch = pack(pieces, self.shape_multiple)
            started = time.perf_counter()
            self.batch_loss_sum(batch).backward()
            seconds = time.perf_counter() - started
        finally:
            self.autocast_dtype = saved
            self.model.zero_grad(set_to_none=True)
            torch.set_rng_state(rng)
        return batch.n_tokens / seconds

    def train_step(self) -> tuple[float, int]:
        groups = self.plan.step_micro_batches(self.step)
        batches = [pack(rows, self.shape_multiple) for g in groups if g
                   for rows in within_budget([self.train_records[i] for i in g],
                                             self.token_budget)]
        n_targets = sum(b.n_targets for b in batches)
        lr = lr_at(self.step, self.plan.total_steps, self.settings)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = 0.0
        for batch in batches:
            loss = self.batch_loss_sum(batch) / max(1, n_targets)
            loss.backward()
            total += float(loss.detach())
        if self.settings.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(list(self.params.values()),
                                           self.settings.max_grad_norm, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, sum(b.n_tokens for b in batches)

    # ------------------------------------------------------------------ loop

    def run(self) -> Outcome:
        """Train to the end or until cancelled."""
        try:
            return self._run()
        finally:
            self.release_casts()
            self.compiler.release()

    def _run(self) -> Outcome:
        total = self.plan.total_steps
        self.model.train()
        window: list[tuple[float, int]] = []  # (seconds, tokens) of recent steps
        measured_sent = False
        while self.step < total:
            if self.cancel.is_set():
                path = self.save_checkpoint()
                self.emit(tp.Cancelled(step=self.step, checkpoint=str(path)))
                return Outcome.CANCELLED
            loss, n_tokens, seconds = self._timed_step()
            first = self.compiler.before_first_graph
            compiled, said = self.compiler.timed(seconds, n_tokens)
            if said:
                self.emit(tp.Log("info", said[0].upper() + said[1:]))
                measured_sent = False  # a new measured estimate at the new speed
            self.step += 1
            self.elapsed += seconds
            self.trained_tokens += n_tokens
            # Not the speed to come: a step that built a graph (and, after the first, eager's).
            if not compiled:
                window = (window + [(seconds, n_tokens)])[-20:]
            elif first:
                window = []
            self._progress(loss, window or [(seconds, n_tokens)], total)
            if not measured_sent and len(window) >= 3:
                # The first step pays for warm-up; estimate from the ones after it.
                self._measured_estimate(window[1:], total)
                measured_sent = True
            if self.step < total and self._stop_now():
                total = self.step
            if self.step % self.eval_every == 0 or self.step == total:
                val = self.evaluate()
                self.val_history.append({"step": self.step, "val_loss": val})
                self.emit(tp.Evaluation(step=self.step, val_loss=round(val, 6)))
            if self._checkpoint_due() or self.step == total:
                # The last one too: a failed gate or export then resumes at the export,
                # and no training is lost.
                path = self.save_checkpoint()
                self.emit(tp.Checkpointed(step=self.step, path=str(path)))
        return Outcome.FINISHED

    def _timed_step(self) -> tuple[float, int, float]:
        """One optimizer step: its loss, tokens and seconds. A first compiled step that
        fails is said once and taken again eagerly, never the end of the run."""
        started = time.perf_counter()
        self.compiler.begin_step()
        try:
            loss, n_tokens = self.train_step()
        except Exception as exc:  # only a first compiled step's
            if not self.compiler.before_first_graph:
                raise
            self.compiler.fail(exc)
            self.optimizer.zero_grad(set_to_none=True)
            self.emit(tp.Log("warning", "Compiling the model for speed failed; "
                                  f"training on without it ({type(exc).__name__})"))
            started = time.perf_counter()
            loss, n_tokens = self.train_step()
        return loss, n_tokens, time.perf_counter() - started

    def _progress(self, loss: float, recent: list[tuple[float, int]], total: int) -> None:
        """The step's ``Progress``: speed and time left from the ``recent`` steps."""
        tps = sum(t for _, t in recent) / max(1e-9, sum(s for s, _ in recent))
        per_step = sum(s for s, _ in recent) / len(recent)
        lr = self.optimizer.param_groups[0]["lr"]
        self.history.append({"step": self.step, "loss": loss, "lr": lr})
        self.emit(tp.Progress(step=self.step, total_steps=total,
                              epoch=round(self.plan.epoch_at(self.step), 4),
                              loss=round(loss, 6), learning_rate=lr,
                              tokens_per_s=round(tps, 1),
                              eta_s=round(per_step * (total - self.step), 1),
                              elapsed_s=round(self.elapsed, 2),
                              peak_memory_bytes=peak_memory_bytes(self.device)))

    def _measured_estimate(self, steady: list[tuple[float, int]], total: int) -> None:
        """The run's time from its measured steps (and the compile decision it informs)."""
        remaining = sum(s for s, _ in steady) / len(steady) * (total - self.step)
        if self._maybe_compile(steady, remaining):  # its cost now, its gain after
            remaining = training_seconds(remaining, self.device.type, os.cpu_count() or 1,
                                         "on", self.decoder.config.hidden_size)
        guess = tp.EstimateEvent(seconds=round(self.overhead_s + self.elapsed + remaining, 1),
                                 peak_memory_bytes=peak_memory_bytes(self.device),
                                 basis="measured")
        self.measured_estimate = MeasuredEstimate(guess.seconds, guess.peak_memory_bytes,
                                                  self.step)
        self.emit(guess)

    def _stop_now(self) -> bool:
        """At an epoch's end, whether :attr:`stop_check` says stop."""
        epoch = self.plan.epoch_at(self.step)
        before = self.plan.epoch_at(self.step - 1)
        if self.stop_check is None or epoch < 1 or int(epoch) == int(before):
            return False
        # Eager: the check generates with a KV cache, a shape the compiled layers were
        # not built for; compiled, dynamo rebuilt a layer per cache layer until its
        # recompile limit (8 builds in a Teach run's first check).
        with self.compiler.eager():
            reason = self.stop_check()
        self.model.train()
        if reason is None:
            return False
        self.stopped_early = reason
        self.emit(tp.Log("info", f"Stopping early at step {self.step} of "
                              f"{self.plan.total_steps}: {reason}"))
        return True

    def _maybe_compile(self, steady: list[tuple[float, int]], remaining: float) -> bool:
        """Start compiling if the mode and the eager ``remaining`` seconds say so."""
        if self.compiler.report is not None or self.compile_mode not in ("auto", "on"):
            return False
        if self.compile_mode != "on" and not worth_compiling(
                self.device.type, remaining, os.cpu_count() or 1,
                self.decoder.config.hidden_size):
            return False
        speed = sum(t for _, t in steady) / max(1e-9, sum(s for s, _ in steady))
        refused = self.compiler.start(self.step, speed, remaining)
        if refused is not None:
            self.emit(tp.Log("info", f"Training eager: {refused}"))
            return False
        self.emit(tp.Log("info", "Compiling the model's layers for speed (a minute or "
                              f"two; about {remaining / 60:.0f} min of training remain)"))
        return True

    # ----------------------------------------------------------- checkpoints

    def _checkpoint_due(self) -> bool:
        if self.checkpoint_every:
            return self.step % self.checkpoint_every == 0
        return self.elapsed - self._checkpointed_at >= CHECKPOINT_SECONDS

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def save_checkpoint(self) -> Path:
        """Write a complete checkpoint (:mod:`backends.training.checkpoint`)."""
        final = checkpoint.save(self.checkpoints, self.step, self.params, self.optimizer,
                                self.device, {"elapsed": self.elapsed,
                                              "trained_tokens": self.trained_tokens,
                                              "history": self.history,
                                              "val_history": self.val_history})
        self._checkpointed_at = self.elapsed
        return final

    def load_checkpoint(self) -> int:
        """Restore the latest checkpoint, if any; returns the step it was taken at."""
        meta = checkpoint.load(self.checkpoints, self.params, self.optimizer, self.device)
        if meta is None:
            return 0
        self.step = int(meta["step"])
        self.elapsed = float(meta["elapsed"])
        self.trained_tokens = int(meta["trained_tokens"])
        self.history = meta["history"]
        self.val_history = meta["val_history"]
        return self.step
