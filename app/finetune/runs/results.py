"""A finished run's model in the library: registered once, with where it came from."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSpec, RunSummary
from app.models.identity import identity
from app.models.library import Library, LibraryError, ModelRecord, UnknownModel
from app.models.provenance import Provenance, RunMetrics
from app.paths import HearthHome


def model_of_run(library: Library, run_id: str) -> ModelRecord | None:
    for record in library.list():
        if record.provenance.run_id == run_id:
            return record
    return None


def register_result(library: Library, home: HearthHome, summary: RunSummary) -> ModelRecord:
    """Add a finished run's model to the library, with where it came from: its GGUF, or
    its GGUF adapter applied live on the base (``ExportSettings.live``)."""
    if summary.model_file is None:
        raise LibraryError(f"run {summary.run_id} exported no GGUF model")
    spec = RunFolder.of(home, summary.run_id).spec()
    provenance = run_provenance(spec, summary)
    if summary.gguf_path is None:
        base = library.get(spec.base.name)
        return library.register_adapter(summary.model_file, base, spec.out_name, provenance)
    with contextlib.suppress(UnknownModel, OSError):  # a merged file stands on its own
        base = library.get(spec.base.name)
        # Which weights its adapter belongs on (app.models.live.same_base compares it).
        provenance.base_identity = identity(base.path, base.provenance.sha256)
    return library.register(summary.gguf_path, spec.out_name, source="finetune",
                            provenance=provenance)


def run_provenance(spec: RunSpec, summary: RunSummary) -> Provenance:
    """Where a run's model came from, as the library keeps it."""
    return Provenance(
        run_id=summary.run_id, base_model=spec.base.name, base_path=spec.base.path,
        dataset=spec.dataset.path, dataset_sha256=spec.dataset.sha256,
        settings=spec.settings,
        quant="adapter" if summary.gguf_path is None else spec.export.quant,
        adapter_dir=summary.adapter_dir, adapter_gguf=summary.adapter_gguf,
        metrics=RunMetrics(summary.val_loss, summary.final_train_loss, summary.tokens_per_s,
                           summary.train_seconds, summary.steps),
        fidelity=summary.fidelity, date=summary.finished_at)


@dataclass
class Adopted:
    """What became of a finished run's model: in the library, or why not."""

    model: ModelRecord | None
    problem: str | None = None


Register = Callable[[Library, HearthHome, RunSummary], ModelRecord]


def adopt_result(library: Library, home: HearthHome, summary: RunSummary,
                 register: Register = register_result) -> Adopted:
    """The model of a finished run, registering it unless that happened already (a
    replayed ``Finished``, or the CLI and the GUI both seeing the end). A run that
    exported no GGUF has no model; a library that refuses the file says why.
    ``register`` adds it (a Teach run's also records a version: app.finished_run)."""
    existing = model_of_run(library, summary.run_id)
    if existing is not None or summary.model_file is None:
        return Adopted(existing)
    try:
        return Adopted(register(library, home, summary))
    except (LibraryError, OSError, ValueError) as exc:
        return Adopted(None, f"The model could not be added to the library: {exc}")
