"""Cutting a document into passages: by its structure, with overlap, each a slice of it.

A passage is what retrieval returns and what a chat would quote, so it should hold one
idea whole: paragraphs are gathered up to :attr:`ChunkSettings.target_chars` and a new
heading or a new page starts a new passage (a passage names one heading and one page),
except where a sentence runs on over the page break: that passage names both pages.
The embedding model reads 256 word pieces, about 1,000 characters of English, so the
target, with the overlap, stays under that. Each passage begins with the last paragraph of the one
before it when that is short (or its last sentences when not), so an answer that
straddles a boundary is whole in one of them.

Every passage is ``document.text[start:end]``: the offsets are exact, and the stored
text is the document's own, never rewritten.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from app.docs.formats import Document, Paragraph


@dataclass(frozen=True)
class ChunkSettings:
    target_chars: int = 800
    """Gather paragraphs until a passage reaches this (the model reads ~1,000 chars)."""
    overlap_chars: int = 200
    """At most this much of the passage before begins the next one."""

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_chars < self.target_chars // 2:
            raise ValueError("overlap_chars must be below half of target_chars")


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    heading: str
    page: int | None
    text: str
    page_end: int | None = None
    """The page it ends on, where that is not ``page`` (a sentence over a page break)."""


def chunk_document(doc: Document, settings: ChunkSettings | None = None) -> list[Chunk]:
    settings = settings or ChunkSettings()
    pages = _Pages(doc)
    pieces = [p for para in doc.paragraphs for p in _split_long(doc.text, para, settings)]
    chunks: list[Chunk] = []
    group: list[Paragraph] = []
    for piece in pieces:
        if group and (pages.breaks(group[-1], piece)
                      or piece.end - group[0].start > settings.target_chars):
            chunks.append(pages.chunk(doc.text, group))
            # Pieces of one long paragraph overlap already; others carry a tail over.
            carried = (_overlap(doc.text, group[-1], settings)
                       if not pages.breaks(group[-1], piece) and piece.start >= group[-1].end
                       else None)
            group = [carried] if carried is not None else []
        group.append(piece)
    if group:
        chunks.append(pages.chunk(doc.text, group))
    return chunks


class _Pages:
    """The page of any offset: from the document's page starts (PDF), else the page its
    paragraph was given (None for formats without pages)."""

    def __init__(self, doc: Document) -> None:
        self.starts = doc.page_starts

    def first(self, para: Paragraph) -> int | None:
        return bisect.bisect_right(self.starts, para.start) if self.starts else para.page

    def last(self, para: Paragraph) -> int | None:
        return (bisect.bisect_right(self.starts, max(para.start, para.end - 1))
                if self.starts else para.page)

    def breaks(self, before: Paragraph, after: Paragraph) -> bool:
        """A new heading or a new page starts a passage of its own."""
        return before.heading != after.heading or self.last(before) != self.first(after)

    def chunk(self, text: str, group: list[Paragraph]) -> Chunk:
        first, last = group[0], group[-1]
        page, page_end = self.first(first), self.last(last)
        return Chunk(first.start, last.end, first.heading, page, text[first.start:last.end],
                     page_end if page_end != page else None)


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+")


def _overlap(text: str, para: Paragraph, settings: ChunkSettings) -> Paragraph | None:
    """The tail of ``para`` that begins the next passage: all of it when short, else
    its sentences that fit in the overlap; None when not even one sentence fits."""
    if para.end - para.start <= settings.overlap_chars:
        return para
    window = para.end - settings.overlap_chars
    m = _SENTENCE_END.search(text, window, para.end)
    if m is None or m.end() >= para.end:
        return None
    return Paragraph(m.end(), para.end, para.heading, para.page)


def _split_long(text: str, para: Paragraph, settings: ChunkSettings) -> list[Paragraph]:
    """A paragraph longer than a passage, cut at sentence ends (or spaces, or anywhere)
    into pieces of about the target size, each overlapping the one before."""
    target = settings.target_chars
    if para.end - para.start <= target:
        return [para]
    pieces: list[Paragraph] = []
    start = para.start
    while start < para.end:
        end = min(para.end, start + target)
        if end < para.end:
            end = _cut_point(text, start, end)
        pieces.append(Paragraph(start, end, para.heading, para.page))
        if end >= para.end:
            break
        start = _overlap_start(text, max(start + 1, end - settings.overlap_chars), end)
    return pieces


def _cut_point(text: str, start: int, end: int) -> int:
    """The last sentence end (else space) in the second half of ``text[start:end]``."""
    half = start + (end - start) // 2
    best = None
    for m in _SENTENCE_END.finditer(text, half, end + 1):
        best = m.end() - len(m.group().lstrip(".!?\"')]"))  # after the mark, not the space
    if best is None:
        space = text.rfind(" ", half, end)
        best = space + 1 if space > half else end
    return best


def _overlap_start(text: str, pos: int, limit: int) -> int:
    """Where the next piece begins: the first sentence that starts at or after ``pos``,
    else the first word (never past ``limit``)."""
    m = _SENTENCE_END.search(text, pos - 1, limit)
    if m is not None and m.end() < limit:
        return m.end()
    while pos < limit and not text[pos - 1].isspace():
        pos += 1
    while pos < limit and text[pos].isspace():
        pos += 1
    return pos
