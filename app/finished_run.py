"""What becomes of a finished run: the one rule the window and the CLI share.

A run's model goes into the library once, whoever sees the run end (the Fine-tune tab,
``hearth finetune``, a replayed ``Finished``): its GGUF, or its GGUF adapter applied live
(:func:`app.finetune.runs.results.adopt_result`). A Teach run also becomes a *version* of
its base (:func:`app.teach.run.keep_result`): Teach itself decides whether to make it the
one the chat uses; one that ends elsewhere, resumed by ``hearth finetune --resume`` or
from the Fine-tune tab, is kept as a version the chat does not use yet (``hearth teach
--use NAME`` or the Teach panel makes it so), never left out of the library.
"""

from __future__ import annotations

from app.finetune.runs.records import RunSummary
from app.finetune.runs.results import Adopted, adopt_result
from app.models.library import Library, LibraryError, ModelRecord
from app.paths import HearthHome
from app.teach.run import keep_result


def adopt_run(library: Library, home: HearthHome, summary: RunSummary) -> Adopted:
    """The model of a finished run, in the library (a Teach run's as a version of its
    base, not made active); registered at most once."""
    if summary.teach is None:
        return adopt_result(library, home, summary)
    return adopt_result(library, home, summary, register=_as_version)


def _as_version(library: Library, home: HearthHome, summary: RunSummary) -> ModelRecord:
    version = keep_result(home, library, summary, accept=False)
    if version is None:
        raise LibraryError(f"run {summary.run_id} has no Teach report to keep")
    return library.get(version.name)
