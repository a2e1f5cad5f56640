"""A one-shot child's answer: a typed record in a file the parent names.

The llama.cpp check of an export (:mod:`backends.export.gguf_check`) and the merge of a
live adapter (:mod:`backends.export.merge_worker`) run as children, because llama.cpp
may abort the whole process on a bad file. The parent names a file; the child writes its
answer there, atomically, with the records' codec (:mod:`app.codec`); the parent reads
it back as the same type. A file rather than a line on stdout, which llama.cpp and the
libraries it loads also print to: a child that dies leaves no file, which the parent
reads as a failure with the child's exit code and last words.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from app.atomic import atomic_write_text
from app.codec import from_dict, to_dict


@dataclass
class Answer:
    """What every answer holds (its subclass adds what the work produced)."""

    error: str | None = None
    """Why the child failed; None when it did its work."""


A = TypeVar("A", bound=Answer)


def write_answer(path: Path, answer: Answer) -> None:
    """The child's side."""
    atomic_write_text(path, json.dumps(to_dict(answer)))


def read_answer(cls: type[A], path: Path, proc: subprocess.CompletedProcess[str],
                what: str) -> A:
    """The parent's side, once ``proc`` (which was given ``path``) has ended: its
    answer, or, where it wrote none or one that cannot be read, an error saying so.
    The parent removes ``path`` before starting the child, so an answer is never an
    earlier run's."""
    try:
        return from_dict(cls, json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        return cls(error=f"{what} exited with code {proc.returncode}: "
                         f"{proc.stderr.strip()[-400:]}")
    except (OSError, ValueError) as exc:  # RecordError and JSON errors are ValueErrors
        return cls(error=f"{what} gave an answer that cannot be read: {exc}")
