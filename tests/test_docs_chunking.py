"""Passages cut by structure with overlap, each an exact slice of its document."""

from __future__ import annotations

from pathlib import Path

from app.docs.chunking import ChunkSettings, chunk_document
from app.docs.formats import Document, _markdown, paragraphs_of
from app.docs.reading import ReadLimits

SETTINGS = ChunkSettings(target_chars=200, overlap_chars=60)


def test_every_passage_is_its_documents_own_text() -> None:
    text = "\n\n".join(f"Paragraph {i} says something about topic {i}. " * 3
                       for i in range(20)).strip()
    doc = Document(text, paragraphs_of(text))
    chunks = chunk_document(doc, SETTINGS)
    assert len(chunks) > 5
    assert all(text[c.start:c.end] == c.text for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)  # nothing left out


def test_passages_overlap_so_a_boundary_loses_nothing() -> None:
    text = "\n\n".join(f"Short paragraph number {i}." for i in range(40))
    chunks = chunk_document(Document(text, paragraphs_of(text)), SETTINGS)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end  # the next begins inside the one before


def test_a_heading_starts_a_passage_and_names_it() -> None:
    md = b"# Watering\n\nWater twice a week.\n\n## Pruning\n\nPrune in March.\n"
    chunks = chunk_document(_markdown(md, ReadLimits()), SETTINGS)
    assert [(c.heading, c.text) for c in chunks] == [
        ("Watering", "# Watering\n\nWater twice a week."),
        ("Pruning", "## Pruning\n\nPrune in March.")]


def test_a_page_starts_a_passage_and_names_it() -> None:
    text = "Page one words.\n\nPage two words."
    doc = Document(text, paragraphs_of(text, 0, 15, page=1) + paragraphs_of(text, 17, page=2))
    assert [(c.page, c.text) for c in chunk_document(doc, SETTINGS)] == [
        (1, "Page one words."), (2, "Page two words.")]


def test_one_long_paragraph_is_cut_at_sentence_ends() -> None:
    text = " ".join(f"Sentence {i} is here." for i in range(100))
    chunks = chunk_document(Document(text, paragraphs_of(text)), SETTINGS)
    assert len(chunks) > 5
    assert all(len(c.text) <= SETTINGS.target_chars for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert all(text[c.start:c.end] == c.text for c in chunks)


def test_a_sentence_over_a_page_break_stays_whole_and_names_both_pages(
        tmp_path: Path) -> None:
    from app.docs.formats import parse
    from app.docs.reading import read_source
    from tests.docs_files import make_pdf

    path = tmp_path / "book.pdf"
    path.write_bytes(make_pdf([["The first page ends.", "", "The kiln must cool below"],
                               ["fifty degrees before unloading.", "", "A new paragraph."]]))
    doc = parse(read_source(path, ReadLimits()), ReadLimits())
    chunks = chunk_document(doc, SETTINGS)
    [whole] = [c for c in chunks if "must cool below" in c.text]
    assert "fifty degrees before unloading." in whole.text
    assert (whole.page, whole.page_end) == (1, 2)
    assert all(doc.text[c.start:c.end] == c.text for c in chunks)


def test_a_page_that_ends_a_sentence_ends_its_passage(tmp_path: Path) -> None:
    from app.docs.formats import parse
    from app.docs.reading import read_source
    from tests.docs_files import make_pdf

    path = tmp_path / "book.pdf"
    path.write_bytes(make_pdf([["Page one says one thing."], ["Page two another."]]))
    doc = parse(read_source(path, ReadLimits()), ReadLimits())
    assert [(c.page, c.page_end, c.text) for c in chunk_document(doc, SETTINGS)] == [
        (1, None, "Page one says one thing."), (2, None, "Page two another.")]
