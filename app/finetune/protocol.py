"""The training worker's events, in one place.

The training worker (``python -m backends.training.worker RUN_DIR``) writes one JSON
object per line to its stdout, each one of the events below; its stderr is free-form
log text. The client sends commands as lines on the worker's stdin (only ``cancel``
today), which works the same on every platform and needs no socket. Every event is
also appended to ``events.jsonl`` in the run folder, so a GUI that starts later (or
after a crash) can replay how a run went.

Bump :data:`TRAIN_PROTOCOL_VERSION` on any incompatible change; the first event,
:class:`TrainHello`, carries it and the supervisor refuses a mismatch. ``TrainHello``'s
base, the log, error and death events are the lifecycle events both workers share
(:mod:`app.workers.lifecycle`), known here by their one name (``tp.Log``, ``tp.Error``,
``tp.WorkerDied``), as the inference protocol knows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from app.codec import RecordError
from app.finetune.runs.records import RunSummary
from app.workers import lifecycle
from app.workers.lifecycle import Error, Log, WorkerDied  # shared; callers write tp.Log
from app.workers.wire import WireError, from_json, to_json

TRAIN_PROTOCOL_VERSION = 1
CANCEL_COMMAND = "cancel"


@dataclass
class TrainHello(lifecycle.Hello):
    """First event: who is training, and on what device."""

    run_id: str
    device: str  # "cpu" or "cuda:0 (NVIDIA ...)"
    dtype: str  # "float32" or "bfloat16" (autocast)
    torch_version: str
    resumed_from_step: int = 0


@dataclass
class Phase:
    """The worker moved on: loading, tokenizing, training, saving, merging, exporting,
    quantizing, checking."""

    name: str
    message: str
    kind: ClassVar[str] = "phase"


@dataclass
class DataReady:
    """The dataset tokenized with the base model's own tokenizer and chat template."""

    train_records: int
    val_records: int
    train_tokens: int
    target_tokens: int  # tokens that carry loss (assistant replies, or all text)
    val_tokens: int
    truncated_records: int  # records cut to max_seq_len: reported, never silent
    longest_record_tokens: int
    max_seq_len: int
    total_steps: int
    kind: ClassVar[str] = "data_ready"


@dataclass
class EstimateEvent:
    """Predicted duration and peak memory; "formula" first, "measured" after a few steps."""

    seconds: float
    peak_memory_bytes: int
    basis: str
    kind: ClassVar[str] = "estimate"


@dataclass
class Progress:
    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    tokens_per_s: float
    eta_s: float
    elapsed_s: float
    peak_memory_bytes: int
    kind: ClassVar[str] = "progress"


@dataclass
class Evaluation:
    step: int
    val_loss: float
    kind: ClassVar[str] = "evaluation"


@dataclass
class Checkpointed:
    step: int
    path: str
    kind: ClassVar[str] = "checkpointed"


@dataclass
class Cancelled:
    """Training stopped on request; a checkpoint was saved, so the run can be resumed."""

    step: int
    checkpoint: str
    kind: ClassVar[str] = "cancelled"


@dataclass
class Exported:
    """A file was written: the adapter, the F16 GGUF, or the quantized GGUF."""

    what: str  # "adapter", "gguf_f16", "gguf"
    path: str
    size_bytes: int
    kind: ClassVar[str] = "exported"


@dataclass
class Finished:
    """The run is complete; ``summary`` is also saved as ``summary.json``."""

    summary: RunSummary
    kind: ClassVar[str] = "finished"


EVENTS = (TrainHello, Phase, DataReady, EstimateEvent, Progress, Evaluation, Checkpointed,
          Cancelled, Exported, Finished, Log, Error, WorkerDied)
_BY_KIND: dict[str, type] = {cls.kind: cls for cls in EVENTS}


class TrainProtocolError(WireError):
    """A line that is not one of our events."""


def encode(event: Any) -> str:
    return to_json(event)


def decode(line: str) -> Any:
    event = from_json(line, _BY_KIND, error=TrainProtocolError)
    if isinstance(event, Finished) and not isinstance(event.summary, RunSummary):
        try:  # the summary is a record with its own tolerant codec
            event.summary = RunSummary.from_json(event.summary)
        except RecordError as exc:
            raise TrainProtocolError(f"bad finished message: {exc}") from exc
    return event
