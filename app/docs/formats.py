"""A file's bytes as text with its structure: paragraphs, the heading each is under, pages.

The parsers were chosen by measurement (BENCHMARKS.md, "Documents: parsers"): pypdf
extracted the same words as PyMuPDF, pypdfium2 and pdfminer.six on real manuals and is
pure Python (a hostile PDF can raise, never crash the process) and the smallest install;
DOCX is read with ``zipfile`` and ``ElementTree`` with a bound on the decompressed XML,
which python-docx (and lxml, 16 MB) would not add; HTML through the standard library's
``html.parser``. Every parser hands back a :class:`Document` whose ``text`` the chunks'
offsets point into: for text and Markdown that is the file's own decoded text.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from xml.etree import ElementTree

from app.docs.reading import ReadLimits, SourceBytes, Unreadable
from app.units import format_bytes


@dataclass(frozen=True)
class Paragraph:
    """``text[start:end]`` of its document, under ``heading``, on ``page`` (PDF: 1-based)."""

    start: int
    end: int
    heading: str = ""
    page: int | None = None


@dataclass
class Document:
    text: str
    paragraphs: list[Paragraph] = field(default_factory=list)
    pages: int | None = None
    page_starts: list[int] = field(default_factory=list)
    """Where each page's text begins in ``text`` (PDF), so any offset names its page."""
    encoding: str = ""
    notes: list[str] = field(default_factory=list)
    """What the person should know about how it was read (text decoded as cp1252)."""


def parse(source: SourceBytes, limits: ReadLimits) -> Document:
    """The document in ``source``, or :class:`Unreadable` naming what is wrong with it."""
    parser = {"pdf": _pdf, "docx": _docx, "html": _html, "markdown": _markdown,
              "text": _plain}[source.kind]
    doc = parser(source.data, limits)
    if len(doc.text) > limits.max_text_chars:
        raise Unreadable(f"its text is {len(doc.text):,} characters, over the "
                         f"{limits.max_text_chars:,} limit for one document")
    if not doc.text.strip():
        raise Unreadable("it holds no text (a scanned PDF needs OCR, which Hearth does "
                         "not do)" if source.kind == "pdf" else "it holds no text")
    return doc


# ------------------------------------------------------------------ plain text

_BOMS = [(codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16")]
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")


def decode_text(data: bytes) -> tuple[str, str, list[str]]:
    """Text, the encoding it was read as, and notes: a BOM's encoding, else UTF-8, else
    Windows-1252 (the usual non-UTF-8 text), else UTF-8 with the bad bytes replaced.

    A binary file named ``.txt`` is refused rather than indexed as noise: NUL bytes or
    many control characters in its first 8 KB say it is not text.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace"), encoding, []
    head = data[:8192]
    if b"\x00" in head or len(_CONTROL.findall(head)) > max(8, len(head) // 20):
        raise Unreadable("it looks like a binary file, not text")
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252", ["not UTF-8: read as Windows-1252"]
    except UnicodeDecodeError:
        return (data.decode("utf-8", errors="replace"), "utf-8",
                ["not valid UTF-8: undecodable bytes replaced with \ufffd"])


_BLANK = re.compile(r"\n[ \t\r\f\v]*\n")


def paragraphs_of(text: str, start: int = 0, end: int | None = None, heading: str = "",
                  page: int | None = None) -> list[Paragraph]:
    """The blank-line separated paragraphs of ``text[start:end]``, trimmed of space."""
    end = len(text) if end is None else end
    found: list[Paragraph] = []
    pos = start
    for m in _BLANK.finditer(text, start, end):
        found += _trimmed(text, pos, m.start(), heading, page)
        pos = m.end()
    found += _trimmed(text, pos, end, heading, page)
    return found


def _trimmed(text: str, start: int, end: int, heading: str,
             page: int | None) -> list[Paragraph]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [Paragraph(start, end, heading, page)] if end > start else []


def _plain(data: bytes, limits: ReadLimits) -> Document:
    text, encoding, notes = decode_text(data)
    return Document(text, paragraphs_of(text), encoding=encoding, notes=notes)


_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def _markdown(data: bytes, limits: ReadLimits) -> Document:
    """Paragraphs under the ATX heading (``# ...``) before them; a heading starts one."""
    text, encoding, notes = decode_text(data)
    paras: list[Paragraph] = []
    heading, pos = "", 0
    for m in _MD_HEADING.finditer(text):
        paras += paragraphs_of(text, pos, m.start(), heading)
        heading, pos = m.group(2).strip(), m.start()
    paras += paragraphs_of(text, pos, len(text), heading)
    return Document(text, paras, encoding=encoding, notes=notes)


# ------------------------------------------------------------------------- PDF

def _pdf(data: bytes, limits: ReadLimits) -> Document:
    """Each page's text, pages joined by a blank line. A paragraph whose sentence runs
    on over a page break is one paragraph, so the sentence is not cut in two; its
    passage then names both pages (from ``page_starts``)."""
    import pypdf
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a stranger's PDF warns a lot
    if not data.lstrip()[:1024].startswith(b"%PDF") and b"%PDF" not in data[:1024]:
        raise Unreadable("it is not a PDF (no %PDF header)")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("it is encrypted with a password; save an unlocked copy "
                             "and add that")
        count = len(reader.pages)
        if count > limits.max_pdf_pages:
            raise Unreadable(f"it has {count:,} pages, over the {limits.max_pdf_pages:,} "
                             "page limit for one document")
        pages = [_page_text(reader.pages[i]) for i in range(count)]
    except Unreadable:
        raise
    except (PdfReadError, NotImplementedError) as exc:
        raise Unreadable(_pdf_reason(exc)) from exc
    except Exception as exc:  # pypdf raises anything on a damaged file
        raise Unreadable(f"it is a damaged PDF ({type(exc).__name__}: {exc})"[:300]) from exc
    text, paras, starts = "", list[Paragraph](), list[int]()
    for number, page in enumerate(pages, start=1):
        if text:
            text += "\n\n"
        starts.append(len(text))
        text += page
        found = paragraphs_of(text, starts[-1], len(text), page=number)
        if paras and found and _runs_on(text, paras[-1]):
            found[0] = Paragraph(paras.pop().start, found[0].end, page=number - 1)
        paras += found
    return Document(text, paras, pages=len(pages), page_starts=starts)


_ENDS_SENTENCE = re.compile(r"[.!?:;][\"')\]]*$")


def _runs_on(text: str, para: Paragraph) -> bool:
    """Whether the last paragraph of a page stops mid-sentence (it goes on overleaf)."""
    return _ENDS_SENTENCE.search(text, para.start, para.end) is None


def _page_text(page: object) -> str:
    extract = getattr(page, "extract_text")  # noqa: B009 - typed loosely by pypdf
    text: str = extract() or ""
    return text.replace("\x00", "")


def _pdf_reason(exc: Exception) -> str:
    text = str(exc)
    if "crypt" in text.lower() or "password" in text.lower():
        return f"it is encrypted in a way Hearth cannot open ({text})"[:300]
    return f"it is a damaged PDF ({text})"[:300]


# ------------------------------------------------------------------------ DOCX

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MAX_ZIP_ENTRIES = 10_000


def _docx(data: bytes, limits: ReadLimits) -> Document:
    """The body's paragraphs (tables' cells included) in order, under the last heading."""
    xml = _docx_xml(data, limits)
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise Unreadable("its document.xml declares entities, which Word never writes; "
                         "refused (an entity-expansion attack)")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise Unreadable(f"it is a damaged DOCX (document.xml: {exc})") from exc
    text, paras, heading = "", [], ""
    for p in root.iter(f"{_W}p"):
        line = "".join(_run_text(node) for node in p.iter())
        style = p.find(f"{_W}pPr/{_W}pStyle")
        name = (style.get(f"{_W}val") or "") if style is not None else ""
        if name.lower().startswith(("heading", "title")) and line.strip():
            heading = line.strip()
        if not line.strip():
            continue
        if text:
            text += "\n\n"
        start = len(text)
        text += line
        paras += _trimmed(text, start, len(text), heading, None)
    return Document(text, paras)


def _run_text(node: ElementTree.Element) -> str:
    if node.tag == f"{_W}t":
        return node.text or ""
    return {f"{_W}tab": "\t", f"{_W}br": "\n", f"{_W}cr": "\n"}.get(node.tag, "")


def _docx_xml(data: bytes, limits: ReadLimits) -> bytes:
    """word/document.xml, decompressed at most to the limit whatever the zip claims: the
    sizes in a zip's directory are the packer's word, so the read itself is bounded."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if len(zf.infolist()) > _MAX_ZIP_ENTRIES:
                raise Unreadable(f"its zip holds over {_MAX_ZIP_ENTRIES:,} entries")
            try:
                member = zf.open("word/document.xml")
            except KeyError as exc:
                raise Unreadable("it is not a Word document (no word/document.xml)") from exc
            with member:
                xml = member.read(limits.max_docx_xml_bytes + 1)
    except Unreadable:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError,
            NotImplementedError, RuntimeError) as exc:
        raise Unreadable(f"it is a damaged DOCX ({exc})") from exc
    if len(xml) > limits.max_docx_xml_bytes:
        raise Unreadable(f"its text unpacks past {format_bytes(limits.max_docx_xml_bytes)} "
                         "(a zip bomb, or a document too large to index)")
    return xml


# ------------------------------------------------------------------------ HTML

_BLOCKS = {"p", "div", "li", "tr", "br", "section", "article", "blockquote", "pre",
           "table", "ul", "ol", "dd", "dt", "header", "footer", "main", "aside", "td",
           "th", "h1", "h2", "h3", "h4", "h5", "h6", "title", "figcaption", "hr"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6", "title"}
_HIDDEN = {"script", "style", "noscript", "template", "svg"}


class _HtmlText(HTMLParser):
    """Visible text in blocks; headings remembered for the blocks under them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []  # (text, heading)
        self._parts: list[str] = []
        self._hidden = 0
        self._in_heading = False
        self.heading = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self._flush()
            self._in_heading = tag in _HEADINGS

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._parts.append(data)

    def _flush(self) -> None:
        text = " ".join("".join(self._parts).split())
        self._parts = []
        if not text:
            return
        if self._in_heading:
            self.heading = text
        self.blocks.append((text, self.heading))
        self._in_heading = False

    def close(self) -> None:
        super().close()
        self._flush()


def _html(data: bytes, limits: ReadLimits) -> Document:
    raw, encoding, notes = decode_text(data)
    parser = _HtmlText()
    parser.feed(raw)
    parser.close()
    text, paras = "", []
    for block, heading in parser.blocks:
        if text:
            text += "\n\n"
        paras.append(Paragraph(len(text), len(text) + len(block), heading))
        text += block
    return Document(text, paras, encoding=encoding, notes=notes)
