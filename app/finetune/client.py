"""Fine-tuning runs from the app's side: create a run, drive its worker, list runs.

A run is a folder ``<home>/runs/<run_id>/`` holding everything about it: ``run.json``
(base model, dataset hash, settings, where outputs go), the checked and split data
(``data/train.jsonl``, ``data/val.jsonl``, fixed at creation so a resumed run trains on
exactly the same records), ``state.json`` (status, step), ``events.jsonl`` (every event
the worker sent), ``checkpoints/`` and ``summary.json``. The folder is the source of
truth, so a run survives a crash of the app or of the worker (``kill -9`` included) and
``resume`` continues it from its last checkpoint.

:class:`TrainingClient` starts ``python -m backends.training.worker RUN_DIR`` (by module
name: this process never imports torch) and turns its stdout into
:mod:`app.finetune.protocol` events, delivered to ``listener`` on a reader thread (a GUI
adapts them to signals) or, without a listener, through :meth:`TrainingClient.events`.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
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
        self.proc: subprocess.Popen[str] | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._ended = False
        self.summary: dict[str, Any] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            return
        root = str(Path(__file__).resolve().parents[2])
        # The worker compares this with its parent to tell "the app died" (the run is
        # interrupted, resumable) from "the app closed my stdin" after a cancel.
        env = dict(os.environ, PYTHONUNBUFFERED="1", HEARTH_PARENT_PID=str(os.getpid()))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self._ended = False
        log = self.log_file.open("a", encoding="utf-8")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "backends.training.worker", str(self.dir)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                encoding="utf-8", env=env, cwd=root, bufsize=1)
        finally:
            log.close()
        threading.Thread(target=self._read, args=(self.proc,), daemon=True,
                         name=f"train-{self.run_id}").start()

    def cancel(self) -> None:
        """Ask the worker to checkpoint and stop; it answers with ``Cancelled``."""
        if self.alive and self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(tp.CANCEL_COMMAND + "\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):
                pass

    def kill(self) -> None:
        """Stop the worker at once (no checkpoint beyond the last periodic one)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self, timeout: float | None = None) -> int | None:
        return self.proc.wait(timeout) if self.proc is not None else None

    def _emit(self, event: Any) -> None:
        if isinstance(event, tp.Finished):
            self.summary = event.summary
        if self.listener is not None:
            self.listener(event)
        else:
            self._queue.put(event)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        final = False
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = tp.decode(line)
            except tp.TrainProtocolError:
                self._tail.append(line)
                continue
            if isinstance(event, tp.TrainHello) and (
                    event.protocol_version != tp.TRAIN_PROTOCOL_VERSION):
                self._emit(tp.TrainError("protocol", "the training worker speaks another "
                                         "protocol version; reinstall Hearth"))
                self.kill()
                final = True
                break
            if isinstance(event, tp.Finished | tp.TrainError | tp.Cancelled):
                final = True
            self._emit(event)
        code = proc.wait()
        if not final:
            tail = self._log_tail()
            how = (f"was killed (signal {-code})" if code < 0 else f"exited with code {code}")
            self._emit(tp.WorkerExited(
                exit_code=code, last_log_lines=tail,
                message=f"The training worker {how}. The run can be resumed from its last "
                        f"checkpoint: hearth finetune --resume {self.run_id}"))
        if self.listener is None:
            self._queue.put(_END)

    def _log_tail(self) -> list[str]:
        try:
            lines = self.log_file.read_text("utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        return (list(self._tail) + lines)[-10:]

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
