"""Rendering a finished message: Markdown prose and Pygments-highlighted code blocks.

The text is split at fenced code blocks. Prose goes through Qt's own Markdown reader
(``QTextCursor.insertMarkdown``, CommonMark + GitHub tables and task lists, with raw
HTML off: a reply's ``<img src=...>`` shows as the text it is), into a
:class:`~ui.untrusted.SafeTextDocument`, which loads no image a reply names; code is
coloured token by token with Pygments straight into character formats, in a shaded
table whose header carries the language and a "Copy" link (``copy-code:N``) that the
message view answers.

A single line break is kept as a line break (:func:`keep_line_breaks`), as chat
readers expect, rather than joined into the paragraph as CommonMark says.

Rendering costs a few milliseconds per long message, so it happens once, when a reply
is complete — never per streamed token.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.style import StyleMeta
from pygments.styles import get_style_by_name
from pygments.token import Text
from pygments.util import ClassNotFound
from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QPalette,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFrameFormat,
    QTextLength,
    QTextTableFormat,
)
from PySide6.QtWidgets import QApplication

from ui import theme
from ui.theme import is_dark
from ui.untrusted import SafeTextDocument

COPY_SCHEME = "copy-code"
# GitHub's dialect without its raw HTML: model text is never markup that acts.
MARKDOWN_FEATURES = (QTextDocument.MarkdownFeature.MarkdownDialectGitHub
                     | QTextDocument.MarkdownFeature.MarkdownNoHTML)
_CODE_BLOCK = QTextCharFormat.Property.UserProperty
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*\n", re.M)


@dataclass
class Segment:
    kind: str  # "prose" or "code"
    text: str
    language: str = ""


def split_fences(text: str) -> list[Segment]:
    """Prose and fenced code, in order. An unclosed fence (a reply cut short) runs to
    the end, as CommonMark says."""
    segments: list[Segment] = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            break
        if opening.start() > pos:
            segments.append(Segment("prose", text[pos:opening.start()]))
        fence = opening.group(1)
        closing = re.compile(rf"^[ \t]{{0,3}}{fence[0]}{{{len(fence)},}}[ \t]*$", re.M)
        end = closing.search(text, opening.end())
        body_end = end.start() if end else len(text)
        segments.append(Segment("code", text[opening.end():body_end].rstrip("\n"),
                                opening.group(2).lower()))
        pos = end.end() if end else len(text)
    if pos < len(text):
        segments.append(Segment("prose", text[pos:]))
    return [s for s in segments if s.kind == "code" or s.text.strip()]


_SETEXT_UNDERLINE = re.compile(r"^[ \t]{0,3}(=+|-+)[ \t]*$")


def keep_line_breaks(prose: str) -> str:
    """End each line that another line follows with a hard break (two spaces).

    CommonMark joins the lines of a paragraph with spaces; a model (like a person in a
    chat) means a line break, so a four-line poem came out as one line. A line before a
    heading's underline keeps its soft break, or the heading would be lost.
    """
    lines = prose.split("\n")
    for i, (line, following) in enumerate(zip(lines, lines[1:], strict=False)):
        if (line.strip() and following.strip() and not line.endswith("  ")
                and not _SETEXT_UNDERLINE.match(following)):
            lines[i] = line + "  "
    return "\n".join(lines)


# A long message is shown as pieces of about this many characters, each its own
# document: laying out (and re-laying out on a resize) a piece costs a few ms where a
# whole 16,000-character reply costs a frame-dropping 60-80 ms (on a busy 2-core box).
PIECE_CHARS = 1200


def split_points(text: str, limit: int = PIECE_CHARS) -> list[int]:
    """Offsets that cut ``text`` into pieces: after a blank line outside code fences,
    once the piece holds ``limit`` characters.

    Decided by complete lines only, so cutting a streamed reply as it grows gives the
    same pieces as cutting the finished text.
    """
    points: list[int] = []
    start = pos = 0
    in_fence = False
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # an unfinished line decides nothing yet
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        pos += len(line)
        if not in_fence and not line.strip() and pos - start >= limit and pos < len(text):
            points.append(pos)
            start = pos
    return points


def split_pieces(text: str, limit: int = PIECE_CHARS) -> list[str]:
    bounds = [0, *split_points(text, limit), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@lru_cache(maxsize=4)
def _style(dark: bool) -> StyleMeta:
    return get_style_by_name("github-dark" if dark else "friendly")


@lru_cache(maxsize=64)
def _lexer(language: str):  # a Pygments lexer
    aliases = {"py": "python", "js": "javascript", "ts": "typescript", "sh": "bash",
               "shell": "bash", "console": "bash", "yml": "yaml", "c++": "cpp"}
    try:
        return get_lexer_by_name(aliases.get(language, language) or "text",
                                 stripnl=False, ensurenl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=False)


def warm_up(languages: tuple[str, ...] = ("python", "bash", "javascript", "json", "text")
            ) -> threading.Thread:
    """Build the common lexers on a short-lived thread at start-up: a lexer compiles
    its regular expressions on first use (~100 ms for Python), which would otherwise
    land on the frame that first shows a code block."""
    thread = threading.Thread(target=lambda: [_lexer(lang) for lang in languages],
                              name="pygments-warm-up", daemon=True)
    thread.start()
    return thread


def monospace_font() -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    app_font = QApplication.font()
    font.setPointSizeF(max(8.0, app_font.pointSizeF() * 0.95))
    return font


class MarkdownRenderer:
    """Fills a QTextDocument from message text; remembers each code block for Copy."""

    def __init__(self, palette: QPalette) -> None:
        self.palette = palette
        self.dark = is_dark(palette)
        self.style = _style(self.dark)
        self._formats: dict[object, QTextCharFormat] = {}
        self.mono = monospace_font()

    def render(self, document: QTextDocument, text: str) -> list[str]:
        """Replace ``document``'s content with ``text`` rendered; returns the code blocks.

        Render into a document no view shows yet (see :class:`RenderJob`): edits to a
        displayed document are laid out one by one, some thirty times slower.
        """
        blocks: list[str] = []
        for _ in self.steps(document, text, blocks):
            pass
        return blocks

    def steps(self, document: QTextDocument, text: str, blocks: list[str]
              ) -> Iterator[None]:
        """:meth:`render` in small steps (a prose segment, a few hundred code tokens),
        so a long reply can be rendered between two frames of the event loop."""
        document.clear()
        cursor = QTextCursor(document)
        first = True
        for segment in split_fences(text):
            if not first:
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
            first = False
            if segment.kind == "prose":
                cursor.insertMarkdown(keep_line_breaks(segment.text.strip("\n")),
                                      MARKDOWN_FEATURES)
                yield
            else:
                yield from self._insert_code(cursor, segment, len(blocks))
                blocks.append(segment.text)
        yield from self._tidy(document)

    def _tidy(self, document: QTextDocument) -> Iterator[None]:
        """Qt's Markdown gives inline code no shading; give it the code blocks' colours."""
        code_bg = QColor(self.style.background_color)
        inline = QTextCharFormat()
        inline.setBackground(QBrush(code_bg))
        inline.setForeground(QBrush(QColor(self._default_code_color())))
        cursor = QTextCursor(document)
        block = document.begin()
        n = 0
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                fmt = fragment.charFormat()
                if fmt.fontFixedPitch() and not fmt.hasProperty(_CODE_BLOCK):
                    cursor.setPosition(fragment.position())
                    cursor.setPosition(fragment.position() + fragment.length(),
                                       QTextCursor.MoveMode.KeepAnchor)
                    cursor.mergeCharFormat(inline)
                it += 1
            block = block.next()
            n += 1
            if n % 200 == 0:
                yield

    def _default_code_color(self) -> str:
        color = self.style.style_for_token(Text).get("color")
        return f"#{color}" if color else theme.CODE_TEXT[self.dark]

    def _insert_code(self, cursor: QTextCursor, segment: Segment, index: int
                     ) -> Iterator[None]:
        background = QColor(self.style.background_color)
        header_bg = background.darker(106) if not self.dark else background.lighter(125)
        table_format = QTextTableFormat()
        table_format.setBorder(0)
        table_format.setCellPadding(6)
        table_format.setCellSpacing(0)
        table_format.setTopMargin(4)
        table_format.setBottomMargin(4)
        table_format.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_None)
        table_format.setWidth(QTextLength(QTextLength.Type.PercentageLength, 100))
        table_format.setBackground(QBrush(background))
        table = cursor.insertTable(2, 2, table_format)

        muted = QTextCharFormat()
        muted.setFont(QApplication.font())
        muted.setFontPointSize(max(7.0, QApplication.font().pointSizeF() * 0.85))
        muted.setForeground(QBrush(QColor(theme.CODE_MUTED[self.dark])))
        for column in (0, 1):
            cell = table.cellAt(0, column)
            cell_format = cell.format()
            cell_format.setBackground(QBrush(header_bg))
            cell.setFormat(cell_format)
        head = table.cellAt(0, 0).firstCursorPosition()
        head.insertText(segment.language or "text", muted)
        link_cursor = table.cellAt(0, 1).firstCursorPosition()
        right = QTextBlockFormat()
        right.setAlignment(Qt.AlignmentFlag.AlignRight)
        link_cursor.setBlockFormat(right)
        link = QTextCharFormat(muted)
        link.setAnchor(True)
        link.setAnchorHref(f"{COPY_SCHEME}:{index}")
        link.setForeground(QBrush(self.palette.color(QPalette.ColorRole.Link)))
        link_cursor.insertText("Copy", link)

        table.mergeCells(1, 0, 1, 2)
        code_cell = table.cellAt(1, 0)
        code_format = code_cell.format()
        code_format.setBackground(QBrush(background))
        code_cell.setFormat(code_format)
        code_cursor = code_cell.firstCursorPosition()
        for n, (token_type, value) in enumerate(
                _lexer(segment.language).get_tokens(segment.text), start=1):
            code_cursor.insertText(value, self._format(token_type))
            if n % 300 == 0:
                yield

    def _format(self, token_type: object) -> QTextCharFormat:
        fmt = self._formats.get(token_type)
        if fmt is None:
            style = self.style.style_for_token(token_type)
            fmt = QTextCharFormat()
            fmt.setFont(self.mono)
            fmt.setFontFixedPitch(True)
            fmt.setProperty(_CODE_BLOCK, True)  # so _tidy leaves code-block text alone
            color = style.get("color")
            fmt.setForeground(QBrush(QColor(f"#{color}" if color else
                                            self._default_code_color())))
            if style.get("bold"):
                fmt.setFontWeight(QFont.Weight.Bold)
            if style.get("italic"):
                fmt.setFontItalic(True)
            self._formats[token_type] = fmt
        return fmt


class RenderJob:
    """One message rendered in steps into a detached document, for a view to adopt.

    :meth:`step` does a slice of the work and says whether it is finished; the
    conversation view runs jobs a few milliseconds at a time between frames.
    """

    def __init__(self, renderer: MarkdownRenderer, text: str, font: QFont) -> None:
        self.text = text
        self.document = SafeTextDocument()
        self.document.setDefaultFont(font)
        self.document.setDocumentMargin(2)
        self.blocks: list[str] = []
        self._steps = renderer.steps(self.document, text, self.blocks)
        self.done = False

    def step(self) -> bool:
        try:
            next(self._steps)
        except StopIteration:
            self.done = True
        return self.done

    def run(self) -> RenderJob:
        while not self.step():
            pass
        return self
