"""The PDF half of ``hearth bench docs``: the same documents as pages, and the page cited.

A reply that cites "page 3" must be right about the page, so the bench renders its
Markdown documents as PDFs (wrapped at 90 characters, 46 lines a page, Helvetica),
indexes those through the real PDF path (pypdf) and checks, for each question whose
answer is found, that the passage names the page the answer phrase is printed on (or
both pages, for a phrase over a page break). The PDFs are written here, byte by byte, so the bench
needs no PDF writer; the tests build their PDFs with the same :func:`pdf_of`.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

from app.docs.indexer import DocumentIndexer
from app.docs.search import DocumentSearch
from app.docs.store import DocumentStore

WIDTH, LINES_PER_PAGE = 90, 46


def pdf_of(pages: list[list[str]]) -> bytes:
    """A valid PDF 1.4 whose page ``i`` shows the lines ``pages[i]`` (Latin-1 text)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
                   " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages))).encode(),
                   len(pages)),
               # WinAnsi: Latin-1 text reads back as written (Standard maps ' to ’)
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
               b"/Encoding /WinAnsiEncoding >>"]
    for i, lines in enumerate(pages):
        shown = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
                 for line in lines]
        stream = "\n".join(["BT", "/F1 11 Tf", "14 TL", "72 760 Td",
                            *(f"({line}) Tj T*" for line in shown), "ET"]).encode("latin-1")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       b"<< /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i))
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def paginate(markdown: str) -> list[list[str]]:
    """The document as printed lines on pages: paragraphs wrapped, a blank line between,
    heading marks dropped (a PDF shows a heading, not its ``#``)."""
    lines: list[str] = []
    for block in markdown.split("\n\n"):
        lines += textwrap.wrap(block.strip().lstrip("# "), WIDTH, break_on_hyphens=False) + [""]
    return [lines[at:at + LINES_PER_PAGE] for at in range(0, len(lines), LINES_PER_PAGE)]


def flat(text: str) -> str:
    """Text with every run of white space one space: a PDF line break is a space."""
    return " ".join(text.split())


def pdf_part(store: DocumentStore, search: DocumentSearch, indexer: DocumentIndexer,
             folder: Path, questions: list[dict[str, str]], tmp: Path) -> dict[str, Any]:
    """Recall@5 (hybrid) on the PDFs and how many of the found answers name their page."""
    pdfs = tmp / "pdf"
    pdfs.mkdir()
    pages_of: dict[str, list[str]] = {}
    for md in sorted(folder.glob("*.md")):
        pages = paginate(md.read_text("utf-8"))
        (pdfs / f"{md.stem}.pdf").write_bytes(pdf_of(pages))
        pages_of[md.name] = [flat(" ".join(page)) for page in pages]
    report = indexer.add([pdfs], "bench-pdf")
    found = right_page = 0
    for q in questions:
        answer = flat(q["answer"])
        texts = pages_of[q["doc"]]
        printed_on = {n for n, page in enumerate(texts, start=1) if answer in page} or {
            n for n in range(1, len(texts)) if answer in f"{texts[n - 1]} {texts[n]}"}
        stem = q["doc"].rsplit(".", 1)[0]
        hits = [p for p in search.search(q["q"], 5, ["bench-pdf"], "hybrid")
                if Path(p.source).stem == stem and answer in flat(p.text)]
        found += bool(hits)
        if hits:  # the passage cites its page, or its pages where a sentence runs on
            first = hits[0].page or 0
            right_page += any(first <= n <= (hits[0].page_end or first) for n in printed_on)
    return {"documents": len(report.outcomes), "pages": sum(map(len, pages_of.values())),
            "passages": sum(o.chunks for o in report.outcomes),
            "recall_at_5_hybrid": round(found / len(questions), 3),
            "page_right": right_page, "answers_found": found}
