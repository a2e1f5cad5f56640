"""The base model's reference answers: where they are cached, and whether they are yet.

Before training, a teach run has the base model answer the everyday check prompts (each
also under small perturbations, to know which answers are stable) and the rehearsal
prompts: the answers the gate compares the taught model's with, and those rehearsed in
training. They depend only on the base file and the prompts, so they are cached per base
file (``backends.training.teach_gate.reference_replies`` reads and writes the file): the
first Teach of a base pays for them, minutes on a CPU, and the next ones read them. The
estimate before Teach (:mod:`app.teach.estimate`) asks here which case it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from app.paths import HearthHome, file_key


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


def is_cached(configured: str | Path | None, check_prompts: list[str],
              rehearse_prompts: list[str]) -> bool:
    """Whether the next run reads the base's answers to these prompts from the cache.

    Only the prompts are compared (the worker also checks its generation settings): a
    Hearth that changed its prompts makes the next run answer them again, and says so.
    """
    path = cache_in_use(configured)
    if path is None:
        return False
    try:
        sets = json.loads(path.read_text("utf-8")).get("sets", {})
        return bool(sets["check"]["prompts"] == check_prompts
                    and sets["rehearse"]["prompts"] == rehearse_prompts)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
