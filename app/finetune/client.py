"""Fine-tuning runs from the app's side: create a run, drive its worker, list runs.

A run is a folder ``<home>/runs/<run_id>/`` holding everything about it: ``run.json``
(base model, dataset hash, settings, where outputs go), the checked and split data
(``data/train.jsonl``, ``data/val.jsonl``, fixed at creation so a resumed run trains on
exactly the same records), ``state.json`` (status, step), ``events.jsonl`` (every event
the worker sent), ``checkpoints/`` and ``summary.json``. The folder is the source of
truth, so a run survives a crash of the app or of the worker (``kill -9`` included) and
``resume`` continues it from its last checkpoint.

:class:`TrainingClient` runs ``python -m backends.training.worker RUN_DIR`` under a
:class:`~app.workers.supervisor.Supervisor` (by module name: this process never imports
torch); the worker's stdout carries :mod:`app.finetune.protocol` events, delivered to
``listener`` on a reader thread (a GUI adapts them to signals) or, without a listener,
through :meth:`TrainingClient.events`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import ExitCode, HearthError
from app.finetune import protocol as tp
from app.finetune.datasets import Dataset
from app.finetune.settings import ExportSettings, LoraSettings
from app.models.library import Library, ModelRecord
from app.paths import HearthHome, safe_stem
from app.workers.lifecycle import WorkerDied
from app.workers.supervisor import Supervisor, WorkerGone, WorkerSpec

Listener = Callable[[Any], None]
_END = object()


class RunError(HearthError, ValueError):
    """A run cannot be created, found or resumed; the message says why."""

    exit_code = ExitCode.BAD_INPUT


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def run_dir(home: HearthHome, run_id: str) -> Path:
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RunError(f"{run_id!r} is not a run id")
    folder = home.runs / run_id
    if not (folder / "run.json").exists():
        raise RunError(f"there is no run {run_id!r}; see 'hearth runs list'")
    return folder


def create_run(home: HearthHome, base: ModelRecord, dataset: Dataset, settings: LoraSettings,
               export: ExportSettings | None = None, holdout: bool = True,
               extra_spec: dict[str, Any] | None = None) -> str:
    """Write a new run folder (split data included) and return its id.

    ``holdout=False`` trains on every record and measures "validation" loss on them too:
    Teach must learn each correction, so none can be held out. ``extra_spec`` adds
    sections to run.json (Teach's gate inputs).
    """
    export = export or ExportSettings()
    if holdout:
        train, val = dataset.split(settings.validation_fraction, settings.seed)
    else:
        train, val = list(dataset.examples), list(dataset.examples)
    run_id = new_run_id()
    folder = home.runs / run_id
    (folder / "data").mkdir(parents=True)
    for name, examples in (("train", train), ("val", val)):
        with (folder / "data" / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for example in examples:
                fh.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    out_name = export.out_name or f"{base.name}-ft-{run_id[-4:]}"
    spec = {
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": {"name": base.name, "path": str(base.path), "source": base.source},
        "dataset": {"path": str(dataset.path), "sha256": dataset.sha256,
                    "format": dataset.format, "records": dataset.stats.records,
                    "duplicates_dropped": dataset.stats.duplicates_dropped,
                    "train_records": len(train), "val_records": len(val)},
        "settings": settings.to_json(),
        "export": asdict(export),
        "out_name": out_name,
        "adapter_dir": str(home.adapters / run_id),
        # The run id keeps two runs with one output name from sharing (and so replacing
        # or deleting) each other's exported files.
        "output_gguf": str(home.models / f"{safe_stem(out_name)}.{run_id}.{export.quant}.gguf"),
        "cache_dir": str(home.root / "cache" / "base-models"),
        **(extra_spec or {}),
    }
    (folder / "run.json").write_text(json.dumps(spec, indent=2), "utf-8")
    (folder / "state.json").write_text(json.dumps({"status": "created", "step": 0}), "utf-8")
    return run_id


@dataclass
class RunInfo:
    run_id: str
    status: str  # created, running, cancelled, exporting, finished, failed, interrupted
    base_model: str
    out_name: str
    dataset: str
    step: int
    total_steps: int | None
    created_at: str
    val_loss: float | None = None
    gguf_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def list_runs(home: HearthHome) -> list[RunInfo]:
    runs = []
    for folder in sorted(home.runs.glob("*/run.json")):
        try:
            spec = json.loads(folder.read_text("utf-8"))
            state = json.loads((folder.parent / "state.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        summary: dict[str, Any] = {}
        if (folder.parent / "summary.json").exists():
            try:
                summary = json.loads((folder.parent / "summary.json").read_text("utf-8"))
            except (OSError, ValueError):
                summary = {}
        status = state.get("status", "created")
        if status in ("running", "exporting") and not _alive(state.get("pid")):
            status = "interrupted"  # the worker died without saying so: resumable
        runs.append(RunInfo(run_id=spec["run_id"], status=status,
                            base_model=spec["base"]["name"], out_name=spec["out_name"],
                            dataset=Path(spec["dataset"]["path"]).name,
                            step=int(state.get("step", 0)),
                            total_steps=state.get("total_steps"),
                            created_at=spec["created_at"], val_loss=summary.get("val_loss"),
                            gguf_path=summary.get("gguf_path")))
    return runs


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - no such process, or no permission to look
        return False


def register_result(library: Library, home: HearthHome, summary: dict[str, Any]
                    ) -> ModelRecord:
    """Add a finished run's GGUF to the library, with where it came from."""
    spec = json.loads((home.runs / summary["run_id"] / "run.json").read_text("utf-8"))
    provenance = {
        "run_id": summary["run_id"], "base_model": spec["base"]["name"],
        "base_path": spec["base"]["path"], "dataset": spec["dataset"]["path"],
        "dataset_sha256": spec["dataset"]["sha256"], "settings": spec["settings"],
        "quant": spec["export"]["quant"], "adapter_dir": summary.get("adapter_dir"),
        "metrics": {k: summary.get(k) for k in ("val_loss", "final_train_loss",
                                                "tokens_per_s", "train_seconds", "steps")},
        "fidelity": summary.get("fidelity"),
        "date": summary.get("finished_at"),
    }
    return library.register(summary["gguf_path"], spec["out_name"], source="finetune",
                            provenance=provenance)


class TrainingClient:
    """One run's worker process. ``start`` it, read its events, ``cancel`` it any time.

    To resume a cancelled or interrupted run, build a client for the same ``run_id``
    and ``start`` it again: the worker continues from the run's last checkpoint.
    """

    def __init__(self, home: HearthHome, run_id: str, listener: Listener | None = None,
                 log_file: Path | None = None) -> None:
        self.home = home
        self.run_id = run_id
        self.dir = run_dir(home, run_id)
        self.listener = listener
        self.log_file = log_file or self.dir / "worker.log"
        self._queue: queue.Queue[Any] = queue.Queue()
        self.summary: dict[str, Any] | None = None
        # The worker compares HEARTH_PARENT_PID with its parent to tell "the app died"
        # (the run is interrupted, resumable) from "the app closed my stdin" after a cancel.
        self.worker = Supervisor(
            WorkerSpec("backends.training.worker", (str(self.dir),), name="training worker",
                       advice="The run can be resumed from its last checkpoint: hearth "
                              f"finetune --resume {run_id}",
                       protocol_version=tp.TRAIN_PROTOCOL_VERSION, channel="pipe",
                       log_file=self.log_file, env={"HEARTH_PARENT_PID": str(os.getpid())}),
            decode=lambda data: tp.decode(data.decode("utf-8")),
            encode=lambda command: str(command).encode("utf-8"),
            on_event=self._emit, on_end=self._on_end)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The worker's process, or None before :meth:`start`."""
        return self.worker.proc

    @property
    def alive(self) -> bool:
        return self.worker.alive

    def start(self) -> None:
        if not self.alive:
            self.worker.start()

    def cancel(self) -> None:
        """Ask the worker to checkpoint and stop; it answers with ``Cancelled``."""
        with contextlib.suppress(WorkerGone):  # already gone: nothing to cancel
            self.worker.send(tp.CANCEL_COMMAND)

    def kill(self) -> None:
        """Stop the worker at once (no checkpoint beyond the last periodic one)."""
        self.worker.kill()

    def wait(self, timeout: float | None = None) -> int | None:
        return self.worker.wait(timeout)

    def _emit(self, event: Any) -> None:
        if isinstance(event, tp.Finished | tp.TrainError | tp.Cancelled):
            self.worker.expect_exit()  # its last word: the exit that follows is no death
        if isinstance(event, tp.Finished):
            self.summary = event.summary
        if self.listener is not None:
            self.listener(event)
        else:
            self._queue.put(event)

    def _on_end(self, died: WorkerDied | None) -> None:
        if died is not None:
            self._emit(died)
        if self.listener is None:
            self._queue.put(_END)

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Every event until the worker ends (only without a listener)."""
        while True:
            try:
                event = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError("the training worker went quiet") from None
            if event is _END:
                return
            yield event
