"""A run's folder and the files in it; creating a run; listing runs.

A run is a folder ``<home>/runs/<run_id>/`` holding everything about it: ``run.json``
(:class:`RunSpec`), the checked and split data (``data/train.jsonl``, ``data/val.jsonl``,
fixed at creation so a resumed run trains on exactly the same records), ``state.json``
(:class:`RunState`), ``events.jsonl`` (every event the worker sent), ``checkpoints/``,
``dtype.json`` (the compute dtype chosen for the run), ``teach_report.json`` and
``summary.json`` (:class:`RunSummary`). The folder is the source of truth, so a run
survives a crash of the app or of the worker and ``resume`` continues it from its last
checkpoint. :class:`RunFolder` is the one place that knows these names.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.atomic import atomic_write_text
from app.codec import RecordError, to_dict
from app.errors import ExitCode, HearthError
from app.finetune import protocol as tp
from app.finetune.datasets import Dataset
from app.finetune.runs.records import BaseRef, DatasetRef, RunSpec, RunState, RunSummary
from app.finetune.runs.status import RunStatus, can_resume
from app.finetune.settings import ExportSettings, LoraSettings
from app.models.architectures import UnsupportedArchitecture, architecture
from app.models.library import ModelRecord
from app.models.live import live_only_refusal
from app.paths import HearthHome, safe_stem
from app.teach.records import TeachSpec


class RunError(HearthError, ValueError):
    """A run cannot be created, found or resumed; the message says why."""

    exit_code = ExitCode.BAD_INPUT


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunFolder:
    """One run's folder: its records, its event log, its checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, home: HearthHome, run_id: str) -> RunFolder:
        """The folder of an existing run; :class:`RunError` for a bad or unknown id."""
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise RunError(f"{run_id!r} is not a run id")
        folder = cls(home.runs / run_id)
        if not folder.spec_file.exists():
            raise RunError(f"there is no run {run_id!r}; see 'hearth runs list'")
        return folder

    # --------------------------------------------------------------- the names

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def home(self) -> HearthHome:
        return HearthHome(self.path.parent.parent)

    spec_file = property(lambda self: self.path / "run.json")
    state_file = property(lambda self: self.path / "state.json")
    summary_file = property(lambda self: self.path / "summary.json")
    events_file = property(lambda self: self.path / "events.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    latest_checkpoint_file = property(lambda self: self.path / "checkpoints" / "latest.json")
    dtype_file = property(lambda self: self.path / "dtype.json")
    teach_report_file = property(lambda self: self.path / "teach_report.json")
    gguf_check_job_file = property(lambda self: self.path / "gguf_check.json")
    gguf_check_result_file = property(lambda self: self.path / "gguf_check_result.json")
    merge_answer_file = property(lambda self: self.path / "merge_answer.json")
    train_file = property(lambda self: self.path / "data" / "train.jsonl")
    val_file = property(lambda self: self.path / "data" / "val.jsonl")
    log_file = property(lambda self: self.path / "worker.log")

    # ------------------------------------------------------------- the records

    def spec(self) -> RunSpec:
        try:
            return RunSpec.from_json(json.loads(self.spec_file.read_text("utf-8")))
        except (OSError, ValueError) as exc:
            raise RunError(f"run {self.run_id}: run.json cannot be read ({exc})") from exc

    def write_spec(self, spec: RunSpec) -> None:
        atomic_write_text(self.spec_file, json.dumps(spec.to_json(), indent=2))

    def state(self) -> RunState:
        """What state.json says; a missing or broken one reads as a fresh run."""
        with contextlib.suppress(OSError, ValueError):
            return RunState.from_json(json.loads(self.state_file.read_text("utf-8")))
        return RunState()

    def write_state(self, status: RunStatus | None = None, *, step: int | None = None,
                    total_steps: int | None = None, pid: int | None = None,
                    error: str | None = None, reason: str | None = None) -> None:
        """Update state.json atomically: each field given replaces its value, the others
        keep theirs."""
        given: dict[str, Any] = {"status": status, "step": step, "total_steps": total_steps,
                                 "pid": pid, "error": error, "reason": reason}
        state = replace(self.state(), **{k: v for k, v in given.items() if v is not None},
                        updated_at=_now())
        atomic_write_text(self.state_file, json.dumps(to_dict(state), indent=2))

    def summary(self) -> RunSummary | None:
        """summary.json, once the run finished; None before (or if it is unreadable)."""
        with contextlib.suppress(OSError, ValueError):
            return RunSummary.from_json(json.loads(self.summary_file.read_text("utf-8")))
        return None

    def write_summary(self, summary: RunSummary) -> None:
        atomic_write_text(self.summary_file, json.dumps(summary.to_json(), indent=2))

    def events(self) -> Iterator[Any]:
        """The events the worker sent so far, in order (lines that do not decode, such
        as a line cut short by a crash, are skipped)."""
        if not self.events_file.exists():
            return
        for line in self.events_file.read_text("utf-8", errors="replace").splitlines():
            with contextlib.suppress(tp.TrainProtocolError):
                yield tp.decode(line)

    def checkpoint_step(self) -> int | None:
        """The step of the last complete checkpoint, or None when there is none."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return int(json.loads(self.latest_checkpoint_file.read_text("utf-8"))["step"])
        return None

    # ---------------------------------------------------------------- meaning

    def status(self, state: RunState | None = None) -> RunStatus:
        """The status, with one correction: a worker that says it is working but is
        gone died without saying so, which makes the run interrupted."""
        state = state or self.state()
        if state.status.active and not _alive(state.pid):
            return RunStatus.INTERRUPTED
        return state.status

    def resumable(self, status: RunStatus | None = None) -> bool:
        return can_resume(status or self.status(), self.checkpoint_step() is not None)

    def sample_prompts(self, n: int = 3) -> list[str]:
        """The last user message of the first held-out records: prompts to compare on."""
        prompts: list[str] = []
        for path in (self.val_file, self.train_file):
            if not path.exists():
                continue
            for line in path.read_text("utf-8").splitlines():
                try:
                    messages = json.loads(line).get("messages") or []
                except (ValueError, AttributeError):
                    continue
                user = [m["content"] for m in messages if m.get("role") == "user"]
                if user and user[-1] not in prompts:
                    prompts.append(user[-1].replace("\n", " "))
                if len(prompts) >= n:
                    return prompts
        return prompts


def create_run(home: HearthHome, base: ModelRecord, dataset: Dataset, settings: LoraSettings,
               export: ExportSettings | None = None, holdout: bool = True,
               teach: TeachSpec | None = None) -> str:
    """Write a new run folder (split data included) and return its id.

    ``holdout=False`` trains on every record and measures "validation" loss on them too:
    Teach must learn each correction, so none can be held out. ``teach`` adds Teach's
    gate inputs to run.json.
    """
    export = export or ExportSettings()
    # Refused now, not after minutes of training when the export cannot write it back.
    architecture(base.info.architecture)
    if live_only_refusal(base):
        raise UnsupportedArchitecture(str(live_only_refusal(base)))
    if holdout:
        train, val = dataset.split(settings.validation_fraction, settings.seed)
    else:
        train, val = list(dataset.examples), list(dataset.examples)
    run_id = new_run_id()
    folder = RunFolder(home.runs / run_id)
    folder.train_file.parent.mkdir(parents=True)
    for path, examples in ((folder.train_file, train), (folder.val_file, val)):
        with path.open("w", encoding="utf-8") as fh:
            for example in examples:
                fh.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    out_name = export.out_name or f"{base.name}-ft-{run_id[-4:]}"
    spec = RunSpec(
        run_id=run_id, created_at=_now(),
        base=BaseRef(name=base.name, path=str(base.path), source=base.source),
        dataset=DatasetRef(path=str(dataset.path), sha256=dataset.sha256,
                           format=dataset.format, records=dataset.stats.records,
                           duplicates_dropped=dataset.stats.duplicates_dropped,
                           train_records=len(train), val_records=len(val)),
        settings=settings, export=export, out_name=out_name,
        adapter_dir=str(home.adapters / run_id),
        # The run id keeps two runs with one output name from sharing (and so replacing
        # or deleting) each other's exported files.
        output_gguf=str(home.models / f"{safe_stem(out_name)}.{run_id}.{export.quant}.gguf"),
        cache_dir=str(home.base_model_cache), teach=teach)
    folder.write_spec(spec)
    folder.write_state(RunStatus.CREATED, step=0)
    return run_id


@dataclass
class RunInfo:
    """One line of the run list (``hearth runs list``, the History page)."""

    run_id: str
    status: RunStatus
    base_model: str
    out_name: str
    dataset: str
    step: int
    total_steps: int | None
    created_at: str
    val_loss: float | None = None
    gguf_path: str | None = None
    resumable: bool = False
    error: str | None = None
    refusal: str | None = None
    """Why the teach gate refused the run (its reasons), for a ``refused`` run."""

    @property
    def output(self) -> str:
        """The name of what the run made: none for a refused run, which exported nothing
        (``out_name`` is only the name it would have had)."""
        return "" if self.status == RunStatus.REFUSED else self.out_name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_info(folder: RunFolder) -> RunInfo:
    spec, state = folder.spec(), folder.state()
    status = folder.status(state)
    summary = folder.summary()
    report = summary.teach if summary is not None else None
    refused = report is not None and not report.passed
    if refused and status == RunStatus.FINISHED:
        # Written before "refused" existed: the gate's report says what happened.
        status = RunStatus.REFUSED
    refusal = "; ".join(report.reasons if report is not None else []) or None
    return RunInfo(run_id=spec.run_id or folder.run_id, status=status,
                   base_model=spec.base.name, out_name=spec.out_name,
                   dataset=spec.dataset.name, step=state.step,
                   total_steps=state.total_steps, created_at=spec.created_at,
                   val_loss=summary.val_loss if summary else None,
                   gguf_path=summary.gguf_path if summary else None,
                   resumable=folder.resumable(status), error=state.error,
                   refusal=refusal if status == RunStatus.REFUSED else None)


def list_runs(home: HearthHome) -> list[RunInfo]:
    """Every readable run, oldest first (a folder that cannot be read is skipped)."""
    runs = []
    for spec_file in sorted(home.runs.glob("*/run.json")):
        try:
            runs.append(run_info(RunFolder(spec_file.parent)))
        except (RunError, RecordError):
            continue
    return runs


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except Exception:  # no such process, or no permission to look
        return False
