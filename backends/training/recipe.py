"""One LoRA fine-tuning run, from its folder to its summary, as a recipe object.

torchtune's shape (``recipes/lora_finetune_single_device.py``): the run's state lives on
the recipe (its spec, device, base model, data, training loop, the compute dtype, where
its events go) and the run is a sequence of steps that share it:

- :meth:`~LoraRecipe.setup`: load the base and tokenize, :meth:`~LoraRecipe.rehearse`,
  put LoRA on the model, build the loop, measure the compute dtype, tell the estimate;
- :meth:`~LoraRecipe.train`: from the last checkpoint when there is one, to the end or
  until cancelled (a checkpoint each time);
- :meth:`~LoraRecipe.gate`: the check that may refuse the trained result;
- :meth:`~LoraRecipe.summarize`: save the adapter, the run's summary;
- :meth:`~LoraRecipe.export`: merge, GGUF, quantize, checked in llama.cpp
  (:mod:`backends.export.pipeline`);
- :meth:`~LoraRecipe.cleanup`: what a failed step left behind.

A plain fine-tune rehearses nothing and has no gate; it is told whether it answers its
own data (the recall check, :mod:`backends.training.recall`). Teach is this recipe with
a rehearsal and a gate (:class:`backends.training.teach_recipe.TeachRecipe`). The
process around a recipe (stdout, stdin, signals, the thread claim) is
:mod:`backends.training.worker`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torch

from app.atomic import atomic_write_text
from app.codec import from_dict, to_dict
from app.finetune import protocol as tp
from app.finetune.estimate import (
    Compute,
    Estimate,
    ModelShape,
    Workload,
    compile_mode,
    estimate,
)
from app.finetune.plan import validation_passes
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunEstimate, RunSpec, RunSummary
from app.finetune.runs.reports import DtypeChoice
from app.finetune.runs.status import RunStatus
from app.machine.profile import Machine
from backends.export.pipeline import REFERENCE_LOGITS, ExportPipeline, write_live_adapter
from backends.training.base_model import BaseModel
from backends.training.data import TokenizedSet
from backends.training.dtype_probe import autocast_dtype, choose_dtype
from backends.training.loading import load_and_tokenize, pick_device
from backends.training.phase_times import PhaseTimes, busy_factor
from backends.training.recall import RecallCheck, recall_seconds
from backends.training.trainer import Outcome, Trainer, peak_memory_bytes

# Tests and benchmarks only: force the compute dtype ("float32" or "bfloat16").
DTYPE_ENV = "HEARTH_TRAIN_DTYPE"
PROBE_VAL_RECORDS = 4


class Events(Protocol):
    """Where a run's events go: the worker's emitter (stdout and ``events.jsonl``), or a
    benchmark's memory. The phases' start times are the run's timings; ``parent_gone``
    says that a cancel was the app dying, not the person's choice."""

    phases: list[tuple[str, float]]
    parent_gone: bool

    def __call__(self, event: Any) -> None: ...


class LoraRecipe:
    """A fine-tuning run; :meth:`run` does its steps in order."""

    # Set by setup().
    started: float
    base: BaseModel
    train_set: TokenizedSet
    val_set: TokenizedSet
    trainer: Trainer
    dtype_choice: DtypeChoice
    guess: Estimate
    timings: PhaseTimes
    n_params: int

    def __init__(self, folder: RunFolder, spec: RunSpec, emit: Events,
                 cancel: threading.Event) -> None:
        self.folder, self.spec, self.emit, self.cancel = folder, spec, emit, cancel
        self.device, self.device_name = pick_device()
        self.checkpoint = folder.checkpoint_step()
        self.resumed_at = 0  # the step training went on from (0: from the start)

    def run(self) -> int:
        """The whole run; the worker's exit code (0 also when cancelled or refused)."""
        try:
            return self._steps()
        finally:
            self.cleanup()

    def _steps(self) -> int:
        """The steps in order; a refused result skips the export, a failed one ends here."""
        self.emit(tp.TrainHello(protocol_version=tp.TRAIN_PROTOCOL_VERSION, pid=os.getpid(),
                                run_id=self.spec.run_id, device=self.device_name,
                                dtype="measuring", torch_version=torch.__version__,
                                resumed_from_step=self.checkpoint or 0))
        self.folder.write_state(RunStatus.RUNNING, pid=os.getpid())
        if not self.setup():
            return 2
        if not self.train():
            return 0
        self.folder.write_state(RunStatus.EXPORTING, step=self.trainer.step)
        refusal = self.gate()
        summary = self.summarize()
        if refusal is not None:
            self.emit(tp.Log("warning", f"the gate failed, so nothing is exported: {refusal}"))
            # Nothing to resume: its checkpoints (tens of MB) would only teach the same harm.
            shutil.rmtree(self.trainer.checkpoints, ignore_errors=True)
        else:
            failure = self.export(summary)
            if failure is not None:
                self.folder.write_state(RunStatus.FAILED, error=failure)
                return 1
        self._record(summary, refused=refusal is not None)
        return 0

    # ------------------------------------------------------------------ setup

    def setup(self) -> bool:
        """The model, the data and the training loop, ready to train; the data's shape
        and the run's estimate told. False (and an error event) when no record survives
        tokenizing."""
        self.started = time.perf_counter()  # the run's own clock: its estimate, its total
        loaded = load_and_tokenize(self.folder, self.spec, self.emit)
        if loaded is None:
            return False
        self.base, self.train_set, self.val_set = loaded.base, loaded.train, loaded.val
        self.rehearse()
        self.trainer = self._training_loop(self._lora_model())
        self.dtype_choice = self._choose_dtype()
        self._announce_data()
        self._estimate()
        return True

    def rehearse(self) -> None:
        """Records of the base model's own to train alongside the data: none here."""

    def start_adapter(self, model: Any) -> None:
        """Where the LoRA weights start: PEFT's own start (B at zero), a fresh adapter."""

    def checks_seconds(self) -> float:
        """The estimate's share of the check after training: the recall check's."""
        return recall_seconds(self.spec, self.timings, self.n_params, self.device)

    def _lora_model(self) -> Any:
        """LoRA on the base model's last layers (the settings' share of them)."""
        from peft import LoraConfig, get_peft_model

        settings = self.spec.settings
        torch.manual_seed(settings.seed)
        n_layers = int(self.base.model.config.num_hidden_layers)
        first = n_layers - max(1, round(n_layers * settings.layer_share))
        # peft annotates lora_alpha as int, but only ever divides it by the rank.
        lora = LoraConfig(r=settings.rank, lora_alpha=settings.alpha,  # type: ignore[arg-type]
                          lora_dropout=settings.dropout,
                          target_modules=settings.target_modules or "all-linear",
                          layers_to_transform=list(range(first, n_layers)) if first else None,
                          bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(self.base.model, lora).to(self.device)
        self.start_adapter(model)
        return model

    def _training_loop(self, model: Any) -> Trainer:
        # Kernels a compiling run builds stay in the person's home (see compiled.py).
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR",
                              str(Path(self.spec.cache_dir).parent / "inductor"))
        return Trainer(model, self.train_set.records, self.val_set.records,
                       self.spec.settings, self.folder.path, self.emit, self.cancel,
                       self.device, compile_mode=compile_mode())

    def _choose_dtype(self) -> DtypeChoice:
        """Measured once per run and kept in the run folder: a resumed run must compute
        as it started, whatever a new timing would say."""
        choice = self._kept_dtype()
        if choice is None:
            trainer, config = self.trainer, self.base.model.config

            def probe_loss(dtype: torch.dtype | None) -> float:
                trainer.autocast_dtype = dtype
                return trainer.evaluate(limit=PROBE_VAL_RECORDS)

            hidden = int(config.hidden_size)
            intermediate = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
            choice = choose_dtype(self.device, hidden, intermediate, probe_loss,
                                  forced=os.environ.get(DTYPE_ENV),
                                  step_speed=trainer.step_speed)
            atomic_write_text(self.folder.dtype_file, json.dumps(to_dict(choice)))
        self.trainer.autocast_dtype = autocast_dtype(choice)
        self.emit(tp.Log("info", f"Computing in {choice.dtype}: {choice.reason}"))
        return choice

    def _kept_dtype(self) -> DtypeChoice | None:
        saved = self.folder.dtype_file
        if saved.exists():
            with contextlib.suppress(OSError, ValueError):
                kept = from_dict(DtypeChoice, json.loads(saved.read_text("utf-8")))
                return replace(kept, reason=f"{kept.reason} (kept on resume)")
        return None

    def _announce_data(self) -> None:
        """The data's shape, and what tokenizing cut or skipped."""
        settings, train, val = self.spec.settings, self.train_set, self.val_set
        truncated = train.truncated + val.truncated
        self.emit(tp.DataReady(train_records=len(train.records), val_records=len(val.records),
                               train_tokens=train.tokens, target_tokens=train.target_tokens,
                               val_tokens=val.tokens, truncated_records=truncated,
                               longest_record_tokens=max(train.longest, val.longest),
                               max_seq_len=settings.max_seq_len,
                               total_steps=self.trainer.plan.total_steps))
        if truncated:
            self.emit(tp.Log("warning", f"{truncated} records are longer "
                             f"than {settings.max_seq_len} tokens and were truncated"))
        if train.dropped_no_target + val.dropped_no_target:
            self.emit(tp.Log("warning", f"{train.dropped_no_target + val.dropped_no_target} "
                             "records had no reply left after truncation and were skipped"))

    def _estimate(self) -> None:
        """The run's first estimate: the whole run, not just training. What already
        happened is measured; the checks and the export are predicted from the last run
        on this machine, or a first guess from the model's size."""
        spec, settings, train = self.spec, self.spec.settings, self.train_set
        plan, cfg = self.trainer.plan, self.base.model.config
        self.n_params = sum(p.numel() for p in self.base.model.parameters())
        dtype = self.dtype_choice.dtype
        per_record = train.tokens / len(train.records)
        run_tokens = int(plan.total_steps * settings.batch_size * settings.grad_accumulation
                         * per_record)
        work = Workload(ModelShape(self.n_params, cfg.hidden_size, cfg.num_hidden_layers,
                                   cfg.vocab_size), steps_tokens=run_tokens,
                        micro_batch_tokens=int(settings.batch_size * per_record),
                        target_fraction=train.target_tokens / max(1, train.tokens),
                        eval_tokens=validation_passes(settings, plan.total_steps)
                        * self.val_set.tokens)
        guess = estimate(work, Compute(Machine.detect(), gpu=self.device.type == "cuda",
                                       dtype=dtype, compile=compile_mode()))
        self.timings = PhaseTimes(Path(spec.cache_dir).parent / "phase_times.json",
                                  self.device_name)
        before = time.perf_counter() - self.started
        after = self.timings.after_training(self.n_params, spec.export, spec.teach,
                                            self.base.gguf_path is not None)
        after += self.checks_seconds()
        busy = busy_factor(self.dtype_choice, torch.get_num_threads())
        guess.seconds = self.timings.training(guess.seconds * busy, dtype)
        self.trainer.overhead_s = before + after
        guess.seconds += before + after
        self.guess = guess
        self.emit(tp.EstimateEvent(seconds=round(guess.seconds, 1),
                                   peak_memory_bytes=guess.peak_memory_bytes, basis="formula"))

    # ------------------------------------------------------------------ train

    def train(self) -> bool:
        """Train, from the last checkpoint when there is one. False when cancelled: the
        run's state then says why (the person's choice, or the app went away)."""
        trainer = self.trainer
        self.resumed_at = trainer.load_checkpoint() if self.checkpoint is not None else 0
        if self.resumed_at:
            self.emit(tp.Log("info", f"resumed from the checkpoint at step {self.resumed_at}"))
        self.emit(tp.Phase("training", f"training {trainer.plan.total_steps} steps on "
                           f"{self.device_name}"))
        self.folder.write_state(total_steps=trainer.plan.total_steps)
        if trainer.run() == Outcome.FINISHED:
            return True
        if self.emit.parent_gone:
            # Not the person's choice: the app died. Keep it listed as resumable.
            self.folder.write_state(RunStatus.INTERRUPTED, step=trainer.step,
                                    reason="the app went away during training")
        else:
            self.folder.write_state(RunStatus.CANCELLED, step=trainer.step)
        return False

    # ------------------------------------------------------- after training

    def gate(self) -> str | None:
        """Why the trained result is refused (nothing is exported), or None. A fine-tune
        is never refused: the recall check tells how it answers its data."""
        return None

    def summarize(self) -> RunSummary:
        """Save the adapter; the run's summary, with whether the tuned model answers its
        own data (the export's results are added later)."""
        summary = self._training_summary()
        summary.recall = RecallCheck(self.folder, self.spec, self.base, self.device,
                                     self.emit).run(self.trainer.model)
        return summary

    def _training_summary(self) -> RunSummary:
        """Save the adapter; the summary of the training."""
        spec, trainer, train, val = self.spec, self.trainer, self.train_set, self.val_set
        adapter_dir = self._save_adapter()
        adapter_gguf = write_live_adapter(trainer.model, self.base.gguf_path,
                                          spec.settings.alpha, adapter_dir, self.emit)
        history, train_s, guess = trainer.history, trainer.elapsed, self.guess
        return RunSummary(
            run_id=spec.run_id, base_model=spec.base, dataset=spec.dataset,
            settings=spec.settings, export=spec.export, device=self.device_name,
            steps=trainer.step, train_records=len(train.records),
            val_records=len(val.records), train_tokens=train.tokens,
            trained_tokens=trainer.trained_tokens,
            truncated_records=train.truncated + val.truncated,
            final_train_loss=history[-1]["loss"] if history else None,
            first_train_loss=history[0]["loss"] if history else None,
            val_loss=trainer.val_history[-1]["val_loss"] if trainer.val_history else None,
            train_seconds=round(train_s, 1),
            tokens_per_s=round(trainer.trained_tokens / max(1e-9, train_s), 1),
            peak_memory_bytes=peak_memory_bytes(self.device),
            estimate=RunEstimate(seconds=round(guess.seconds, 1),
                                 peak_memory_bytes=guess.peak_memory_bytes, basis="formula",
                                 measured=trainer.measured_estimate),
            adapter_dir=str(adapter_dir), dtype=self.dtype_choice,
            adapter_gguf=str(adapter_gguf) if adapter_gguf else None,
            compiled=trainer.compiler.report)

    @property
    def _adapter_dir(self) -> Path:
        return Path(self.spec.adapter_dir)

    @property
    def _adapter_tmp(self) -> Path:
        return self._adapter_dir.with_name(self._adapter_dir.name + ".tmp")

    def _save_adapter(self) -> Path:
        """Write the LoRA adapter next to the old one, then swap it in."""
        adapter_dir, tmp = self._adapter_dir, self._adapter_tmp
        self.emit(tp.Phase("saving", "saving the LoRA adapter"))
        shutil.rmtree(tmp, ignore_errors=True)
        self.trainer.model.save_pretrained(str(tmp), safe_serialization=True)
        shutil.rmtree(adapter_dir, ignore_errors=True)
        os.replace(tmp, adapter_dir)
        self.emit(tp.Exported("adapter", str(adapter_dir),
                              sum(f.stat().st_size for f in adapter_dir.iterdir())))
        return adapter_dir

    def export(self, summary: RunSummary) -> str | None:
        """The result as the run asks: a GGUF of its own or a live adapter, checked in
        llama.cpp; why it failed (the person has been told), or None."""
        if not self.spec.export.gguf:
            self.emit(tp.Log("info", "GGUF export is off for this run: only the adapter is "
                             "kept"))
            return None
        if self.base.gguf_path is None:
            self.emit(tp.Log("warning", "the base model is a safetensors folder: the adapter "
                             "is saved, but GGUF export needs a GGUF base model"))
            return None
        return ExportPipeline(self.folder, self.spec, self.base, self.trainer,
                              self.emit).run(summary)

    def _record(self, summary: RunSummary, refused: bool) -> None:
        """The run's phase times, its summary and its end state, in the folder; then
        the app is told."""
        spec, trainer = self.spec, self.trainer
        summary.total_seconds = round(time.perf_counter() - self.started, 1)
        summary.phase_seconds = self.timings.record(
            self.emit.phases, time.perf_counter(), self.n_params, spec.export, spec.teach,
            summary.gguf_path is not None,
            # A resumed run trained only part of its tokens here: no speed to learn from it.
            trained_tokens=0 if self.resumed_at else trainer.trained_tokens)
        summary.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.folder.write_summary(summary)
        self.folder.write_state(RunStatus.REFUSED if refused else RunStatus.FINISHED,
                                step=trainer.step)
        self.emit(tp.Finished(summary))

    def cleanup(self) -> None:
        """What a step that failed part-way leaves in the run folder and nothing reads:
        a half-written adapter, the llama.cpp check's reference logits (up to hundreds
        of MB). After a finished run there is none."""
        shutil.rmtree(self._adapter_tmp, ignore_errors=True)
        (self.folder.path / REFERENCE_LOGITS).unlink(missing_ok=True)
