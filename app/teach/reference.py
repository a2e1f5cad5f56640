"""The base model's reference answers: where they are cached, and whether they are yet.

Before training, a teach run has the base model answer the everyday check prompts (each
also under small perturbations, to know which answers are stable) and the rehearsal
prompts: the answers the gate compares the taught model's with, and those rehearsed in
training. They depend only on the base file and the prompts, so they are cached per base
file (``backends.training.teach_gate.reference_replies`` reads and writes the file, by
:func:`read_sets` and :func:`write_sets`): the first Teach of a base pays for them,
minutes on a CPU, and the next ones read them. The estimate before Teach
(:mod:`app.teach.estimate`) asks here which case it is.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from app.atomic import atomic_write_text
from app.codec import from_dict, to_dict
from app.paths import HearthHome, file_key
from app.teach.records import Reply

T = TypeVar("T", "_CacheFile", "_CacheIndex")


@dataclass
class ReferencePrompts:
    """A set of reference prompts ("check", "rehearse") and what their answers were
    generated with: the worker answers again when any of it differs."""

    prompts: list[str] = field(default_factory=list)
    kinds: list[str] | None = None
    """The check prompts' kinds (their answers are marked stable or not); None: not
    marked."""
    max_new_tokens: int = 0
    perturbations: list[float] = field(default_factory=list)
    """The perturbations' scale and seeds the stability was judged under."""


@dataclass
class ReferenceSet(ReferencePrompts):
    """The set with the base's answers."""

    replies: list[Reply] = field(default_factory=list)


@dataclass
class _CacheFile:
    sets: dict[str, ReferenceSet] = field(default_factory=dict)


@dataclass
class _CacheIndex:
    """The file read for its prompts only: the codec skips the replies' token ids, which
    are most of it (about a tenth of the time for the starter's 160 answers)."""

    sets: dict[str, ReferencePrompts] = field(default_factory=dict)


def reference_cache(home: HearthHome, base_path: Path) -> Path | None:
    """Where a base file's reference answers are kept (run.json's ``reference_cache``);
    None for a base that is not a file here (nothing to key the cache on)."""
    if not base_path.exists():
        return None
    return home.root / "cache" / "teach" / f"{file_key(base_path)}.json"


def cache_in_use(configured: str | Path | None) -> Path | None:
    """The file the worker really uses: ``configured``, or its namesake under
    ``$HEARTH_CACHE`` when that is set (tests and benchmarks share one cache there)."""
    if not configured:
        return None
    path = Path(configured)
    if os.environ.get("HEARTH_CACHE"):
        return Path(os.environ["HEARTH_CACHE"]) / "teach-reference" / path.name
    return path


@contextlib.contextmanager
def making(path: Path | None) -> Iterator[None]:
    """Held while a process reads, makes and writes ``path``'s answers: a second run on
    the same base (a fine-tune's recall check beside a Teach, the test suite's workers)
    waits for the first's answers and reads them, instead of making the same ones
    beside it and overwriting the other's sets. Where files cannot be locked
    (Windows), each makes its own, as before."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def read_sets(path: Path | None) -> dict[str, ReferenceSet]:
    """The sets cached in ``path``; none when it is missing or not what Hearth writes
    (then they are answered again and the file rewritten)."""
    return _read(path, _CacheFile).sets if path is not None else {}


def _read(path: Path, kind: type[T]) -> T:
    try:
        return from_dict(kind, json.loads(path.read_text("utf-8")))
    except (OSError, ValueError):  # RecordError and a JSON error are ValueErrors
        return kind()


def write_sets(path: Path, sets: dict[str, ReferenceSet]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(to_dict(_CacheFile(sets))))


def is_cached(configured: str | Path | None, check_prompts: list[str],
              rehearse_prompts: list[str] | None = None) -> bool:
    """Whether the next run reads the base's answers to these prompts from the cache
    (``rehearse_prompts`` None: the check set only, all Fine-tune's recall check asks).

    Only the prompts are compared (the worker also checks its generation settings): a
    Hearth that changed its prompts makes the next run answer them again, and says so.
    """
    path = cache_in_use(configured)
    sets = _read(path, _CacheIndex).sets if path is not None else {}
    check, rehearse = sets.get("check"), sets.get("rehearse")
    return check is not None and check.prompts == check_prompts and (
        rehearse_prompts is None or (rehearse is not None
                                     and rehearse.prompts == rehearse_prompts))
