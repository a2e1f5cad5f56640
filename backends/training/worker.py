"""The training worker: ``python -m backends.training.worker RUN_DIR``.

Runs one fine-tuning run described by ``RUN_DIR/run.json`` (written by
:mod:`app.finetune.client`) from start to finish: load the base model, tokenize, train LoRA
(resuming from the last checkpoint when there is one), save the adapter, merge, export
GGUF F16, quantize and check it with llama.cpp (in a further child process), and write
``summary.json``. Events (:mod:`app.finetune.protocol`) go to stdout as JSON lines and to
``events.jsonl``; logs go to stderr. A ``cancel`` line on stdin, SIGINT, or the parent
closing stdin saves a checkpoint and stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from app.atomic import atomic_write_text
from app.codec import from_dict, to_dict
from app.finetune import protocol as tp
from app.finetune.datasets import Example
from app.finetune.estimate import Compute, ModelShape, Workload, compile_mode, estimate
from app.finetune.plan import validation_passes
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunEstimate, RunSpec, RunSummary
from app.finetune.runs.reports import DtypeChoice
from app.finetune.runs.status import RunStatus
from app.machine.profile import Machine
from app.machine.threads import ThreadClaims, auto_threads
from app.paths import HearthHome
from app.teach.records import GateReport
from backends.training import teach_step
from backends.training.dtype_probe import autocast_dtype, choose_dtype
from backends.training.export_step import (
    check_live_adapter,
    export_and_check,
    write_live_adapter,
)
from backends.training.phase_times import PhaseTimes, busy_factor
from backends.training.recall import RecallCheck, recall_seconds
from backends.training.trainer import Outcome

# Tests and benchmarks only: force the compute dtype ("float32" or "bfloat16").
DTYPE_ENV = "HEARTH_TRAIN_DTYPE"
PROBE_VAL_RECORDS = 4

log = logging.getLogger("hearth.train")


class Emitter:
    """Sends each event to the parent (stdout) and to ``events.jsonl``.

    When the parent goes away (the app was killed or crashed) the pipe breaks. That
    must not kill the worker before it has saved its work: the first failed write
    sets ``parent_gone`` and ``cancel``, stdout is pointed at the null device, and the
    events keep going to ``events.jsonl``; the training loop then checkpoints at its
    next step and the run is recorded as interrupted (resumable).
    """

    def __init__(self, run_dir: Path, cancel: threading.Event | None = None) -> None:
        self.lock = threading.Lock()
        self.file = (run_dir / "events.jsonl").open("a", encoding="utf-8")
        self.phases: list[tuple[str, float]] = []  # (name, when it began): the timings
        self.cancel = cancel
        self.parent_gone = False

    def __call__(self, event: Any) -> None:
        if isinstance(event, tp.Phase):
            self.phases.append((event.name, time.perf_counter()))
        line = tp.encode(event)
        with self.lock:
            if not self.parent_gone:
                try:
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                except (OSError, ValueError):
                    self._lose_parent()
            self.file.write(line + "\n")
            self.file.flush()

    def _lose_parent(self) -> None:
        self.parent_gone = True
        if self.cancel is not None:
            self.cancel.set()
        log.warning("the app went away; saving a checkpoint and stopping")
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for exit


def _read_examples(path: Path) -> list[Example]:
    with path.open(encoding="utf-8") as fh:
        return [Example.from_json(json.loads(line)) for line in fh if line.strip()]


def _watch_stdin(cancel: threading.Event, emit: Emitter) -> None:
    try:
        for line in sys.stdin:
            if line.strip() == tp.CANCEL_COMMAND:
                cancel.set()
    except (OSError, ValueError):
        pass
    # The parent went away: stop at the next step, with a checkpoint.
    emit.parent_gone = emit.parent_gone or not _parent_alive()
    cancel.set()


def _parent_alive() -> bool:
    """False once this worker has been orphaned (re-parented to init or a subreaper)."""
    parent = os.environ.get("HEARTH_PARENT_PID")
    if parent and parent.isdigit():
        return os.getppid() == int(parent)
    return True


def pick_device() -> tuple[torch.device, str]:
    """The GPU when torch sees one, else the CPU. The compute dtype is chosen later, by
    measurement (:mod:`backends.training.dtype_probe`); the weights themselves stay float32 (a
    135M-1B model fits easily), so the merge and the export start from the exact
    dequantized base, not a bf16 rounding of it."""
    if torch.cuda.is_available():
        return torch.device("cuda", 0), f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return torch.device("cpu"), "cpu"


def pick_dtype(folder: RunFolder, device: torch.device, config: Any,
               val_loss: Any, step_speed: Any = None) -> DtypeChoice:
    """Measure once per run and keep the answer in the run folder: a resumed run must
    compute as it started, whatever a new timing would say."""
    saved = folder.dtype_file
    if saved.exists():
        with contextlib.suppress(OSError, ValueError):
            kept = from_dict(DtypeChoice, json.loads(saved.read_text("utf-8")))
            return replace(kept, reason=f"{kept.reason} (kept on resume)")
    hidden = int(config.hidden_size)
    intermediate = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
    choice = choose_dtype(device, hidden, intermediate, val_loss,
                          forced=os.environ.get(DTYPE_ENV), step_speed=step_speed)
    atomic_write_text(saved, json.dumps(to_dict(choice)))
    return choice


def run(run_dir: Path, emit: Emitter, cancel: threading.Event) -> int:
    """The whole run; the exit code of the worker (0 also when cancelled)."""
    folder = RunFolder(run_dir)
    spec = folder.spec()
    device, device_name = pick_device()
    checkpoint = folder.checkpoint_step()
    emit(tp.TrainHello(protocol_version=tp.TRAIN_PROTOCOL_VERSION, pid=os.getpid(),
                       run_id=spec.run_id, device=device_name,
                       dtype="measuring",
                       torch_version=torch.__version__, resumed_from_step=checkpoint or 0))
    folder.write_state(RunStatus.RUNNING, pid=os.getpid())
    started = time.perf_counter()
    loaded = load_and_tokenize(folder, spec, emit)
    if loaded is None:
        return 2
    base, train, val = loaded
    gate_inputs = teach_step.prepare(spec.teach, base, train, device, emit) \
        if spec.teach else None
    trainer, dtype_choice = _prepare_trainer(folder, spec, base, train, val, device, emit,
                                             cancel)
    if gate_inputs is not None:
        teach_step.stop_when_learned(trainer, base, gate_inputs, device)
    guess, timings, n_params = _announce_plan(spec, base, train, val, trainer, device,
                                              device_name, started, emit, dtype_choice)
    resumed = trainer.load_checkpoint() if checkpoint is not None else 0
    if resumed:
        emit(tp.Log("info", f"resumed from the checkpoint at step {resumed}"))
    emit(tp.Phase("training", f"training {trainer.plan.total_steps} steps on {device_name}"))
    folder.write_state(total_steps=trainer.plan.total_steps)
    if trainer.run() == Outcome.CANCELLED:
        if emit.parent_gone:
            # Not the person's choice: the app died. Keep it listed as resumable.
            folder.write_state(RunStatus.INTERRUPTED, step=trainer.step,
                               reason="the app went away during training")
        else:
            folder.write_state(RunStatus.CANCELLED, step=trainer.step)
        return 0
    folder.write_state(RunStatus.EXPORTING, step=trainer.step)
    train_s = trainer.elapsed
    report = None
    if gate_inputs is not None:
        report = teach_step.gate(gate_inputs, trainer.model, base, spec.settings, device,
                                 emit)
        atomic_write_text(folder.teach_report_file, json.dumps(report.to_json(), indent=2))
    summary = _summary(spec, folder, trainer, train, val, train_s, guess, dtype_choice,
                       device_name, device, report, emit, base.gguf_path)
    if not spec.teach:  # does it answer its data? (Teach's gate judges its own answers)
        summary.recall = RecallCheck(folder, spec, base, device, emit).run(trainer.model)
    if report is not None and not report.passed:
        emit(tp.Log("warning", "the gate failed, so nothing is exported: "
                         + "; ".join(report.reasons)))
        # Nothing to resume: its checkpoints (tens of MB) would only teach the same harm.
        shutil.rmtree(trainer.checkpoints, ignore_errors=True)
    elif not spec.export.gguf:
        emit(tp.Log("info", "GGUF export is off for this run: only the adapter is kept"))
    elif base.gguf_path is None:
        emit(tp.Log("warning", "the base model is a safetensors folder: the adapter "
                         "is saved, but GGUF export needs a GGUF base model"))
    else:
        finish = check_live_adapter if spec.export.live else export_and_check
        failure = finish(folder, spec, trainer.model, base, trainer, val, device, summary,
                         emit)
        if failure is not None:
            folder.write_state(RunStatus.FAILED, error=failure)
            return 1
    summary.total_seconds = round(time.perf_counter() - started, 1)
    summary.phase_seconds = timings.record(emit.phases, time.perf_counter(), n_params,
                                           spec.export, spec.teach,
                                           summary.gguf_path is not None,
                                           # A resumed run trained only part of its
                                           # tokens here: no speed to learn from it.
                                           trained_tokens=0 if resumed
                                           else trainer.trained_tokens)
    summary.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    folder.write_summary(summary)
    refused = report is not None and not report.passed
    folder.write_state(RunStatus.REFUSED if refused else RunStatus.FINISHED, step=trainer.step)
    emit(tp.Finished(summary))
    return 0


def load_and_tokenize(folder: RunFolder, spec: RunSpec, emit: Callable[[Any], None]
                       ) -> tuple[Any, Any, Any] | None:
    """The base model and the run's data tokenized with its template; None (and an
    error event) when no record survives tokenizing."""
    from backends.training.base_model import load_base
    from backends.training.data import tokenize_examples

    settings = spec.settings
    emit(tp.Phase("loading", f"loading {spec.base.name}"))
    cache = Path(os.environ.get("HEARTH_CACHE") or spec.cache_dir)
    base = load_base(spec.base.path, dtype=torch.float32, cache_dir=cache)
    base.model.config.use_cache = False
    emit(tp.Phase("tokenizing", "tokenizing with the model's chat template"))
    train, val = (tokenize_examples(_read_examples(path), base.tokenizer, base.template,
                                    settings.max_seq_len, base.eos_token,
                                    last_turn_only=spec.teach is not None)
                  for path in (folder.train_file, folder.val_file))
    if not train.records or not val.records:
        emit(tp.Error("bad_data", "no record keeps an assistant reply within the "
                           f"maximum sequence length ({settings.max_seq_len} tokens); "
                           "raise --max-seq-len"))
        return None
    return base, train, val


def _prepare_trainer(folder: RunFolder, spec: RunSpec, base: Any, train: Any, val: Any,
                     device: torch.device, emit: Emitter, cancel: threading.Event
                     ) -> tuple[Any, DtypeChoice]:
    """LoRA on the base model, the trainer over it, and the compute dtype chosen."""
    from peft import LoraConfig, get_peft_model

    from backends.training.trainer import Trainer

    settings = spec.settings
    torch.manual_seed(settings.seed)
    n_layers = int(base.model.config.num_hidden_layers)
    first = n_layers - max(1, round(n_layers * settings.layer_share))
    # peft annotates lora_alpha as int, but only ever divides it by the rank.
    lora = LoraConfig(r=settings.rank, lora_alpha=settings.alpha,  # type: ignore[arg-type]
                      lora_dropout=settings.dropout,
                      target_modules=settings.target_modules or "all-linear",
                      layers_to_transform=list(range(first, n_layers)) if first else None,
                      bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(base.model, lora).to(device)
    teach_step.continue_from(peft_model, spec.teach, emit)
    # Kernels a compiling run builds stay in the person's home (see compiled.py).
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(spec.cache_dir).parent / "inductor"))
    trainer = Trainer(peft_model, train.records, val.records, settings, folder.path, emit,
                      cancel, device, compile_mode=compile_mode())

    def probe_loss(dtype: torch.dtype | None) -> float:
        trainer.autocast_dtype = dtype
        return trainer.evaluate(limit=PROBE_VAL_RECORDS)

    dtype_choice = pick_dtype(folder, device, base.model.config, probe_loss,
                              trainer.step_speed)
    trainer.autocast_dtype = autocast_dtype(dtype_choice)
    emit(tp.Log("info", f"Computing in {dtype_choice.dtype}: {dtype_choice.reason}"))
    return trainer, dtype_choice


def _announce_plan(spec: RunSpec, base: Any, train: Any, val: Any, trainer: Any,
                   device: torch.device, device_name: str, started: float, emit: Emitter,
                   dtype_choice: DtypeChoice | None = None) -> tuple[Any, PhaseTimes, int]:
    """Tell the data's shape and the run's first estimate (the whole run, not just
    training: what already happened is measured; checks and export are predicted from
    the last run on this machine, or a first guess from the model's size)."""
    settings, plan, cfg = spec.settings, trainer.plan, base.model.config
    truncated = train.truncated + val.truncated
    emit(tp.DataReady(train_records=len(train.records), val_records=len(val.records),
                      train_tokens=train.tokens, target_tokens=train.target_tokens,
                      val_tokens=val.tokens, truncated_records=truncated,
                      longest_record_tokens=max(train.longest, val.longest),
                      max_seq_len=settings.max_seq_len, total_steps=plan.total_steps))
    if truncated:
        emit(tp.Log("warning", f"{truncated} records are longer "
                         f"than {settings.max_seq_len} tokens and were truncated"))
    if train.dropped_no_target + val.dropped_no_target:
        emit(tp.Log("warning", f"{train.dropped_no_target + val.dropped_no_target} "
                         "records had no reply left after truncation and were skipped"))
    n_params = sum(p.numel() for p in base.model.parameters())
    dtype = dtype_choice.dtype if dtype_choice else "float32"
    per_record = train.tokens / len(train.records)
    run_tokens = int(plan.total_steps * settings.batch_size * settings.grad_accumulation
                     * per_record)
    work = Workload(ModelShape(n_params, cfg.hidden_size, cfg.num_hidden_layers,
                               cfg.vocab_size), steps_tokens=run_tokens,
                    micro_batch_tokens=int(settings.batch_size * per_record),
                    target_fraction=train.target_tokens / max(1, train.tokens),
                    eval_tokens=validation_passes(settings, plan.total_steps) * val.tokens)
    guess = estimate(work, Compute(Machine.detect(), gpu=device.type == "cuda", dtype=dtype,
                                   compile=compile_mode()))
    timings = PhaseTimes(Path(spec.cache_dir).parent / "phase_times.json", device_name)
    before = time.perf_counter() - started
    after = timings.after_training(n_params, spec.export, spec.teach,
                                   base.gguf_path is not None)
    after += 0.0 if spec.teach else recall_seconds(spec, timings, n_params, device)
    busy = busy_factor(dtype_choice, torch.get_num_threads())
    guess.seconds = timings.training(guess.seconds * busy, dtype)
    trainer.overhead_s = before + after
    guess.seconds += before + after
    emit(tp.EstimateEvent(seconds=round(guess.seconds, 1),
                          peak_memory_bytes=guess.peak_memory_bytes, basis="formula"))
    return guess, timings, n_params


def _summary(spec: RunSpec, folder: RunFolder, trainer: Any, train: Any, val: Any,
             train_s: float, guess: Any, dtype_choice: DtypeChoice, device_name: str,
             device: torch.device, report: GateReport | None, emit: Emitter,
             base_gguf: Path | None) -> RunSummary:
    """Save the adapter; the summary of the training (export results are added later)."""
    from backends.training.trainer import peak_memory_bytes

    adapter_dir = _save_adapter(trainer.model, Path(spec.adapter_dir), emit)
    adapter_gguf = write_live_adapter(trainer.model, base_gguf, spec.settings.alpha,
                                      adapter_dir, emit)
    history = trainer.history
    return RunSummary(
        run_id=spec.run_id, base_model=spec.base, dataset=spec.dataset,
        settings=spec.settings, export=spec.export, device=device_name,
        steps=trainer.step, train_records=len(train.records),
        val_records=len(val.records), train_tokens=train.tokens,
        trained_tokens=trainer.trained_tokens,
        truncated_records=train.truncated + val.truncated,
        final_train_loss=history[-1]["loss"] if history else None,
        first_train_loss=history[0]["loss"] if history else None,
        val_loss=trainer.val_history[-1]["val_loss"] if trainer.val_history else None,
        train_seconds=round(train_s, 1),
        tokens_per_s=round(trainer.trained_tokens / max(1e-9, train_s), 1),
        peak_memory_bytes=peak_memory_bytes(device),
        estimate=RunEstimate(seconds=round(guess.seconds, 1),
                             peak_memory_bytes=guess.peak_memory_bytes, basis="formula",
                             measured=trainer.measured_estimate),
        adapter_dir=str(adapter_dir), dtype=dtype_choice, teach=report,
        adapter_gguf=str(adapter_gguf) if adapter_gguf else None,
        compiled=trainer.compiler.report)


def _save_adapter(peft_model: Any, adapter_dir: Path, emit: Emitter) -> Path:
    """Write the LoRA adapter next to the old one, then swap it in."""
    emit(tp.Phase("saving", "saving the LoRA adapter"))
    tmp_adapter = adapter_dir.with_name(adapter_dir.name + ".tmp")
    shutil.rmtree(tmp_adapter, ignore_errors=True)
    peft_model.save_pretrained(str(tmp_adapter), safe_serialization=True)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    os.replace(tmp_adapter, adapter_dir)
    emit(tp.Exported("adapter", str(adapter_dir),
                     sum(f.stat().st_size for f in adapter_dir.iterdir())))
    return adapter_dir


def main() -> None:
    run_dir = Path(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cancel = threading.Event()
    emit = Emitter(run_dir, cancel)
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    threading.Thread(target=_watch_stdin, args=(cancel, emit), daemon=True).start()
    # <home>/runs/<id>: the home's thread claims tell a chat worker left on "auto" to
    # keep off the cores this run computes on.
    claims = ThreadClaims(HearthHome(run_dir.parent.parent).busy)
    threads = auto_threads(claims)
    torch.set_num_threads(threads)
    try:
        with claims.claim("training", threads):
            code = run(run_dir, emit, cancel)
    except MemoryError:
        emit(tp.Error("out_of_memory", "training ran out of memory: lower the batch "
                           "size or the maximum sequence length"))
        RunFolder(run_dir).write_state(RunStatus.FAILED, error="out of memory")
        code = 1
    except Exception as exc:  # every failure becomes an event for the person
        from backends.export.gguf_export import ExportError
        from backends.training.base_model import BaseModelError

        kind = ("bad_model" if isinstance(exc, BaseModelError) else
                "export_failed" if isinstance(exc, ExportError) else "failed")
        traceback.print_exc()
        emit(tp.Error(kind, str(exc) or type(exc).__name__))
        RunFolder(run_dir).write_state(RunStatus.FAILED, error=str(exc))
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
