"""Which library model can be served as its base plus a live adapter, and from what.

A fine-tune of a GGUF base leaves two ways to chat with its result: the merged,
quantized GGUF, or the base with the run's GGUF adapter applied live. The second
switches base <-> tuned in milliseconds when the base is already loaded and needs no
second copy of the weights, so chat prefers it whenever the base is still in the library
unchanged (the same weights, :func:`same_base`) and the adapter file is still there;
otherwise the merged file is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.models.identity import matches
from app.models.library import Library, LibraryError, ModelRecord, UnknownModel


@dataclass(frozen=True)
class LiveServing:
    base: ModelRecord
    adapter: Path


def live_serving(record: ModelRecord, library: Library) -> LiveServing | None:
    """How to serve ``record`` as base + adapter, or None to load its own file."""
    if record.source != "finetune":
        return None
    adapter, base_name = record.provenance.adapter_gguf, record.provenance.base_model
    if not adapter or not base_name or not Path(adapter).is_file():
        return None
    try:
        base = library.get(base_name)
    except UnknownModel:
        return None
    if not same_base(record, base):
        return None  # the base was replaced: the adapter was trained on other weights
    return LiveServing(base, Path(adapter))


def same_base(record: ModelRecord, base: ModelRecord) -> bool:
    """Whether ``base`` holds the weights ``record`` was taught on: by the identity
    recorded with it (:mod:`app.models.identity`), not by the path, which a different
    file can take after a remove and an import, or an upgrade in place (S8).

    A record from before identities were kept has only the path: then the base must also
    be no newer in the library than the fine-tune (a re-import after it is another
    file); a base changed in place is then not noticed.
    """
    if not base.path.is_file():
        return False
    recorded = record.provenance.base_identity
    if recorded is not None:
        return matches(recorded, base.path, base.provenance.sha256)
    return (str(base.path) == str(record.provenance.base_path)
            and base.added_at <= record.added_at)


def live_only_refusal(record: ModelRecord) -> str | None:
    """Why ``record`` cannot be a base for fine-tuning: it is an adapter, not weights."""
    if not record.live_only:
        return None
    return (f"{record.name} is an adapter applied live on "
            f"{record.provenance.base_model}, not a model of its own: fine-tune "
            "that base (Teach adds to its corrections), or merge this version first")


@dataclass(frozen=True)
class LoadPlan:
    path: Path
    """The file the worker must have loaded."""
    adapter: str | None
    """The adapter to apply on it (None: the file alone)."""
    switch_only: bool
    """The file is loaded already: only the adapter changes (no reload)."""


def plan_load(record: ModelRecord, library: Library, loaded_path: str | None,
              live: bool = True) -> LoadPlan:
    """How to get ``record`` ready in a worker that has ``loaded_path`` loaded (or None).

    A fine-tune kept only as an adapter (``live_only``) has nothing else to load: without
    its base it cannot be served, and the error says so.
    """
    serving = live_serving(record, library)
    if serving is None and record.live_only:
        raise LibraryError(
            f"{record.name} is an adapter for {record.provenance.base_model}, which "
            "is no longer in the library as it was trained on (removed or replaced); "
            "import that base again, or remove this model")
    if not live and not record.live_only:
        serving = None
    path = serving.base.path if serving is not None else record.path
    adapter = str(serving.adapter) if serving is not None else None
    return LoadPlan(path, adapter, loaded_path == str(path))
