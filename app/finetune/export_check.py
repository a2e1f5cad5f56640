"""The llama.cpp check of an export: the job the training worker gives it, what it answers.

The training worker (:mod:`backends.export.pipeline`) writes a :class:`CheckJob` to
a file and runs ``python -m backends.export.gguf_check JOB.json``; the child quantizes
(or applies the adapter), measures, and answers with a :class:`CheckResult` in the
job's ``result_path`` (:mod:`app.workers.answer`). Both sides use the records' codec,
so neither spells a key by hand.

The numbers llama.cpp measures (:class:`CheckMeasures`) are what the export gate
(:mod:`app.finetune.fidelity`) judges, and the first half of the run's
:class:`~app.finetune.runs.records.Fidelity`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.atomic import atomic_write_text
from app.codec import from_dict, to_dict
from app.workers.answer import Answer


@dataclass
class CheckMeasures:
    """What llama.cpp measured of the export against the trained PyTorch model."""

    logits_max_abs_diff: float = 0.0
    """The largest difference between llama.cpp's and PyTorch's next-token logits."""
    logits_ref_max_abs: float = 0.0
    """The largest PyTorch logit: what that difference is relative to."""
    top1_agreement: float = 0.0
    tokens_compared: int = 0
    gguf_val_loss: float = 0.0
    """The validation loss of the quantized file (or the base with the adapter)."""
    base_top1_agreement: float | None = None
    """For a live adapter: the quantized base alone against PyTorch's base (the
    departure the adapter's check is measured on top of)."""
    base_logits_max_abs_diff: float | None = None
    top1_within_base_noise: float | None = None
    """For a live adapter: top-1 agreement counting picks within the base's noise as ties."""


@dataclass
class ReferenceSamples:
    """Part (a): token sequences, and where PyTorch's logits over them were saved."""

    samples: list[list[int]] = field(default_factory=list)
    reference_logits: str = ""
    """A safetensors file: ``sample<i>`` (the trained model), and ``base<i>`` (the base
    alone) for a live adapter."""


@dataclass
class ValidationSamples:
    """Part (b): validation records and the positions and tokens their loss is over."""

    samples: list[list[int]] = field(default_factory=list)
    predict_at: list[list[int]] = field(default_factory=list)
    targets: list[list[int]] = field(default_factory=list)


@dataclass
class CheckJob:
    """What to check: a merged F16 export to quantize to ``quant`` (``f16_path`` into
    ``out_path``), or, with ``adapter_path``, a GGUF adapter applied live on
    ``base_path`` (``quant`` "adapter": nothing merged or quantized)."""

    quant: str
    result_path: str
    reference: ReferenceSamples = field(default_factory=ReferenceSamples)
    validation: ValidationSamples = field(default_factory=ValidationSamples)
    f16_path: str = ""
    out_path: str = ""
    base_path: str = ""
    adapter_path: str = ""
    threads: int = 1
    extra_bufts: bool = True
    """llama.cpp's optimized CPU kernels (off after they crashed on this machine:
    :mod:`app.inference.kernels`)."""

    @property
    def live(self) -> bool:
        return bool(self.adapter_path)

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(to_dict(self)))

    @classmethod
    def read(cls, path: Path) -> CheckJob:
        return from_dict(cls, json.loads(path.read_text("utf-8")))


@dataclass
class CheckResult(Answer):
    """The check's answer: the file it made and what it measured (or its ``error``)."""

    path: str = ""
    """The quantized GGUF (for a live job: the adapter)."""
    size_bytes: int = 0
    quantize_s: float = 0.0
    check_s: float = 0.0
    measures: CheckMeasures = field(default_factory=CheckMeasures)
