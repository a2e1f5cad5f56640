"""What a run's files hold, as types: ``run.json``, ``state.json``, ``summary.json``.

The same :class:`RunSummary` travels in the worker's ``Finished`` event. Every field has
a default where older run folders may lack it (see :mod:`app.codec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.codec import from_dict, to_dict
from app.finetune.export_check import CheckMeasures
from app.finetune.recall import RecallReport
from app.finetune.runs.reports import CompileReport, DtypeChoice, MeasuredEstimate
from app.finetune.runs.status import RunStatus
from app.finetune.settings import ExportSettings, LoraSettings
from app.teach.records import GateReport, TeachSpec


@dataclass
class BaseRef:
    """The base model a run started from."""

    name: str = ""
    path: str = ""
    source: str = ""


@dataclass
class DatasetRef:
    """The data a run trained on, as checked when the run was created."""

    path: str = ""
    sha256: str = ""
    format: str = ""
    records: int = 0
    duplicates_dropped: int = 0
    train_records: int = 0
    val_records: int = 0

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass
class RunSpec:
    """``run.json``: everything fixed when the run is created."""

    run_id: str
    created_at: str = ""
    base: BaseRef = field(default_factory=BaseRef)
    dataset: DatasetRef = field(default_factory=DatasetRef)
    settings: LoraSettings = field(default_factory=LoraSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    out_name: str = ""
    adapter_dir: str = ""
    output_gguf: str = ""
    cache_dir: str = ""
    teach: TeachSpec | None = None

    @property
    def gguf(self) -> Path:
        return Path(self.output_gguf)

    @property
    def gguf_f16(self) -> Path:
        """The F16 GGUF the export writes before quantizing (removed after)."""
        return self.gguf.with_name(self.gguf.stem + ".f16.gguf")

    @property
    def title(self) -> str:
        return f"{self.out_name} — {self.base.name} taught with {self.dataset.name}"

    def to_json(self) -> dict[str, Any]:
        data = to_dict(self)
        if self.teach is None:
            del data["teach"]  # as run.json has always been written for a plain run
        return data

    @classmethod
    def from_json(cls, data: Any) -> RunSpec:
        return from_dict(cls, data)


@dataclass
class RunState:
    """``state.json``: what the worker last said about the run (rewritten as it goes)."""

    status: RunStatus = RunStatus.CREATED
    step: int = 0
    total_steps: int | None = None
    pid: int | None = None
    error: str | None = None
    reason: str | None = None
    updated_at: str | None = None

    def __post_init__(self) -> None:
        self.status = RunStatus.parse(self.status)

    @classmethod
    def from_json(cls, data: Any) -> RunState:
        return from_dict(cls, data)


@dataclass
class RunEstimate:
    """What the run was predicted to take: the formula, and the measurement after a few
    steps when there was one."""

    seconds: float = 0.0
    peak_memory_bytes: int = 0
    basis: str = "formula"
    measured: MeasuredEstimate | None = None


@dataclass
class Fidelity(CheckMeasures):
    """The llama.cpp check of the exported GGUF against the trained PyTorch model: what
    it measured, and the export gate's verdict on it."""

    torch_val_loss: float = 0.0
    quant: str = ""
    val_records: int = 0
    warnings: list[str] = field(default_factory=list)
    """Written by runs before the export gate; new runs fail instead (``failed``)."""
    failed: list[str] = field(default_factory=list)
    """Why the export gate (:mod:`app.finetune.fidelity`) refused the export."""


@dataclass
class RunSummary:
    """``summary.json`` and the ``Finished`` event: what a finished run made and measured."""

    run_id: str
    base_model: BaseRef = field(default_factory=BaseRef)
    dataset: DatasetRef = field(default_factory=DatasetRef)
    settings: LoraSettings = field(default_factory=LoraSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    device: str = ""
    steps: int = 0
    train_records: int = 0
    val_records: int = 0
    train_tokens: int = 0
    trained_tokens: int = 0
    truncated_records: int = 0
    final_train_loss: float | None = None
    first_train_loss: float | None = None
    val_loss: float | None = None
    train_seconds: float = 0.0
    tokens_per_s: float = 0.0
    peak_memory_bytes: int = 0
    estimate: RunEstimate = field(default_factory=RunEstimate)
    adapter_dir: str | None = None
    adapter_gguf: str | None = None
    """The adapter in llama.cpp's GGUF format, for chat to apply live (GGUF bases)."""
    dtype: DtypeChoice | None = None
    compiled: CompileReport | None = None
    """What the run did about torch.compile; None: it was not tried."""
    teach: GateReport | None = None
    """Teach's gate report, for a teach run."""
    recall: RecallReport | None = None
    """How many of the data's own questions the result answers as trained, and how many
    everyday answers changed (:mod:`app.finetune.recall`); None for a Teach run."""
    gguf_path: str | None = None
    """The quantized GGUF; None when nothing was exported (adapter only, or a gate that
    failed, or a safetensors base)."""
    gguf_size_bytes: int | None = None
    fidelity: Fidelity | None = None
    quantize_seconds: float | None = None
    check_seconds: float | None = None
    total_seconds: float | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    finished_at: str | None = None
    library_name: str | None = None
    """Set by whoever registered the GGUF in the library (the CLI prints it)."""

    @property
    def model_file(self) -> str | None:
        """What the run made to chat with: the quantized GGUF or, for a result kept as a
        live adapter, the GGUF adapter once llama.cpp's check passed; None: nothing."""
        if self.gguf_path:
            return self.gguf_path
        if (self.export.live and self.adapter_gguf and self.fidelity is not None
                and not self.fidelity.failed):
            return self.adapter_gguf
        return None

    def to_json(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        return from_dict(cls, data)
