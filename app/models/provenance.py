"""Where a library model came from, as the library keeps it (its ``provenance`` column).

One record for every source: which fields are set says where it came from: an imported
file (``imported_from``, ``sha256``), a download (``repo``, ``file``, ``revision``,
``endpoint``, ``sha256``), the starter (``package``), or a fine-tune (``run_id`` and
the rest, :func:`app.finetune.runs.results.run_provenance`; ``live_only`` for one kept
as a GGUF adapter applied on its base). Read and written by the run records' codec
(:mod:`app.codec`): rows written when this was a plain JSON object load as
they are, and a key a newer Hearth adds is ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from app.codec import RecordError, from_dict, to_dict
from app.finetune.runs.records import Fidelity
from app.finetune.settings import LoraSettings
from app.models.identity import Identity

log = logging.getLogger(__name__)


@dataclass
class RunMetrics:
    """A fine-tune's training figures, for the Models tab."""

    val_loss: float | None = None
    final_train_loss: float | None = None
    tokens_per_s: float = 0.0
    train_seconds: float = 0.0
    steps: int = 0


@dataclass
class Provenance:
    sha256: str | None = None
    """The whole file's SHA-256, where Hearth hashed it (imports, downloads)."""
    imported_from: str | None = None
    repo: str | None = None
    file: str | None = None
    revision: str | None = None
    endpoint: str | None = None
    package: str | None = None
    """The Python package the starter model ships in."""

    run_id: str | None = None
    base_model: str | None = None
    """The library name of the base a fine-tune was trained on."""
    base_path: str | None = None
    base_identity: Identity | None = None
    """Which weights its adapter belongs on (:func:`app.models.live.same_base`)."""
    dataset: str | None = None
    dataset_sha256: str | None = None
    settings: LoraSettings | None = None
    quant: str | None = None
    """The export's quantization, or "adapter" for one kept live."""
    adapter_dir: str | None = None
    adapter_gguf: str | None = None
    metrics: RunMetrics | None = None
    fidelity: Fidelity | None = None
    date: str | None = None
    live_only: bool = False
    """Kept only as a GGUF adapter applied live on its base (until merged)."""
    merged_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that are set (a record holds only its source's)."""
        return {k: v for k, v in to_dict(self).items() if v is not None and v is not False}

    @classmethod
    def from_json(cls, data: Any) -> Provenance:
        """A stored row's provenance; one that cannot be read (written by hand, or by a
        Hearth that stored another type) loses only its provenance, never the model."""
        try:
            return from_dict(cls, data)
        except RecordError as exc:
            log.warning("a library record's provenance cannot be read: %s", exc)
            return cls()
