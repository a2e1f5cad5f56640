"""Adding files to a collection: one run over the paths, one outcome per file.

Each file is read, parsed, chunked and embedded, then written in one transaction
(:meth:`DocumentStore.replace_file`), so stopping between files or in the middle of one
(Ctrl-C, the window's Cancel, a crash) leaves every file indexed before as it was. A
file whose bytes hash as before, read by the same model, is not read again. A file
that cannot be read is an outcome with its reason, and the run goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from app.docs.chunking import Chunk, ChunkSettings, chunk_document
from app.docs.formats import parse
from app.docs.protocol import EMBED_MODEL
from app.docs.reading import ReadLimits, Unreadable, files_under, read_source
from app.docs.store import DocumentStore, FileRecord

Status = Literal["indexed", "unchanged", "skipped"]


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: Status
    reason: str = ""
    """Why it was skipped, for the person."""
    chunks: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class AddReport:
    collection: str
    outcomes: list[FileOutcome] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return sum(o.status == status for o in self.outcomes)


def embedding_text(chunk: Chunk) -> str:
    """What the model reads for a passage: its heading first, unless it opens with it
    already, so a passage under "Pruning" is found by a question about pruning."""
    if not chunk.heading or chunk.text.lstrip("# ").startswith(chunk.heading):
        return chunk.text
    return f"{chunk.heading}\n{chunk.text}"


class DocumentIndexer:
    """An add run: ``embed`` turns texts into unit vectors (the embedding worker's);
    ``on_file`` hears each outcome with how many files are done and how many in all;
    ``on_passages`` hears, within a file, how many of its passages are embedded;
    ``cancelled`` is asked between files and between a file's batches."""

    def __init__(self, store: DocumentStore, embed: Callable[[list[str]], np.ndarray],
                 limits: ReadLimits | None = None, chunking: ChunkSettings | None = None,
                 on_file: Callable[[FileOutcome, int, int], None] | None = None,
                 cancelled: Callable[[], bool] = lambda: False,
                 embedder: str = EMBED_MODEL,
                 on_passages: Callable[[Path, int, int], None] | None = None) -> None:
        self.store = store
        self.embed = embed
        self.limits = limits or ReadLimits()
        self.chunking = chunking or ChunkSettings()
        self.on_file = on_file
        self.cancelled = cancelled
        self.embedder = embedder
        self.on_passages = on_passages

    def add(self, paths: list[Path], collection: str) -> AddReport:
        started = time.perf_counter()
        report = AddReport(collection)
        found = list(files_under(paths))
        for done, (path, problem) in enumerate(found, start=1):
            if self.cancelled():
                report.cancelled = True
                break
            name = os.path.abspath(path)
            outcome = (FileOutcome(name, "skipped", problem) if problem is not None
                       else self.add_file(path, collection))
            if outcome is None:  # cancelled in the middle of the file: nothing written
                report.cancelled = True
                break
            report.outcomes.append(outcome)
            if self.on_file is not None:
                self.on_file(outcome, done, len(found))
        report.seconds = time.perf_counter() - started
        return report

    def add_file(self, path: Path, collection: str) -> FileOutcome | None:
        """The file's outcome; None if the run was cancelled before it was written."""
        name = os.path.abspath(path)
        try:
            source = read_source(path, self.limits)
            if self.store.indexed(collection, name) == (source.sha256, self.embedder):
                return FileOutcome(name, "unchanged", bytes=source.size)
            doc = parse(source, self.limits)
        except Unreadable as exc:
            return FileOutcome(name, "skipped", str(exc))
        chunks = chunk_document(doc, self.chunking)
        vectors = self._vectors(path, chunks)
        if vectors is None:
            return None
        changed = source.changed_since()
        if changed is not None:
            return FileOutcome(name, "skipped", changed)
        record = FileRecord(collection, name, source.kind, source.sha256, source.size,
                            doc.pages, self.embedder, len(chunks), doc.notes, "")
        self.store.replace_file(collection, record, chunks, vectors)
        return FileOutcome(name, "indexed", chunks=len(chunks), bytes=source.size,
                           notes=doc.notes)

    def _vectors(self, path: Path, chunks: list[Chunk]) -> np.ndarray | None:
        """The passages' vectors, asked for in batches with a cancel check between."""
        texts = [embedding_text(c) for c in chunks]
        parts = []
        step = 64
        for at in range(0, len(texts), step):
            if self.cancelled():
                return None
            parts.append(self.embed(texts[at:at + step]))
            if self.on_passages is not None:
                self.on_passages(path, min(at + step, len(texts)), len(texts))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
