"""One click from a live adapter to a model that stands alone.

A Teach version is kept as a GGUF adapter applied live on its base (no merge, no second
quantization). :func:`merge_version` merges it into the weights in a worker process
(:mod:`backends.export.merge_worker`: the same merge, export, quantization and llama.cpp
gate a merged run ends with) and points the library entry at the merged GGUF. The
adapter stays, so chat still switches to it live while the base is loaded; what changes
is that the model can now be handed off, copied or loaded without its base.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from app.errors import ExitCode, HearthError
from app.finetune.runs.folder import RunError, RunFolder
from app.models.library import Library, ModelRecord
from app.paths import HearthHome
from app.workers.answer import Answer, read_answer
from app.workers.spawn import run_module


@dataclass
class MergeResult(Answer):
    """The merge worker's answer (:mod:`backends.export.merge_worker`)."""

    gguf_path: str | None = None
    """The merged, quantized GGUF that passed the export gate."""


class MergeError(HearthError):
    """The version cannot be merged; the message says why and what to do."""

    exit_code = ExitCode.BAD_INPUT


def mergeable(record: ModelRecord) -> bool:
    """Whether ``record`` is a live adapter that can be merged."""
    return bool(record.live_only and record.provenance.run_id)


def merge_version(home: HearthHome, library: Library, name: str) -> ModelRecord:
    """Merge version ``name`` into a stand-alone GGUF; its library entry, updated.

    Blocking (minutes on a CPU for a small model): the GUI calls it off the UI thread.
    A failed merge changes nothing: the adapter stays usable live.
    """
    record = library.get(name)
    if not mergeable(record):
        raise MergeError(f"{name} is a model file already: there is nothing to merge")
    try:
        folder = RunFolder.of(home, str(record.provenance.run_id))
    except RunError as exc:
        raise MergeError(f"the run that made {name} is gone, so its adapter cannot be "
                         f"merged ({exc})") from exc
    answer = folder.merge_answer_file
    answer.unlink(missing_ok=True)
    proc = run_module("backends.export.merge_worker", [str(folder.path), str(answer)])
    result = read_answer(MergeResult, answer, proc, "the merge")
    if result.error is not None or result.gguf_path is None:
        raise MergeError(f"merging {name} failed, and it stays an adapter applied live: "
                         f"{result.error or 'it made no GGUF'}")
    summary = folder.summary()
    return library.replace_file(name, result.gguf_path, replace(
        record.provenance, live_only=False,
        quant=summary.export.quant if summary else None,
        fidelity=summary.fidelity if summary else None,
        merged_at=datetime.now(UTC).isoformat(timespec="seconds")))
