"""A message's text on the page: read-only, as tall as its content, streamed or rendered.

A finished message is rendered from Markdown once (:class:`~ui.chat.markdown.RenderJob`);
a streaming one is appended at an end cursor, which costs the layout of the last
paragraph only, however long the reply grows. While it streams, code fences are read by
:class:`~ui.chat.stream_fences.FenceStream`: the fence shows as a small language label
and the code in the code font, not as a raw "```python" line.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QSize, QSizeF, Qt, QUrl
from PySide6.QtGui import (
    QBrush,
    QColor,
    QGuiApplication,
    QPalette,
    QTextCharFormat,
    QTextCursor,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QSizePolicy, QWidget

from ui import theme
from ui.chat.markdown import COPY_SCHEME, MarkdownRenderer, RenderJob, monospace_font
from ui.chat.stream_fences import CODE, FENCE, FenceStream
from ui.status_note import tell
from ui.theme import is_dark, mix
from ui.untrusted import SafeTextBrowser

# Up to this many characters a message is rendered at once (a few ms); longer ones in
# slices by the view, so no single frame waits for a long reply's Markdown.
SYNC_RENDER_CHARS = 1500


class MessageBody(SafeTextBrowser):
    """Read-only text that is as tall as its content; wheel events go to the page.

    A reply is a stranger's text: SafeTextBrowser loads nothing it names, and a link in
    it opens only on a click and only if it is http(s)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        # Transparent through the palette, not a style sheet: a sheet per message
        # makes building a long conversation several times slower.
        self.viewport().setAutoFillBackground(False)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Base, QColor(0, 0, 0, 0))
        self.setPalette(palette)
        self.document().setDocumentMargin(2)
        self.code_blocks: list[str] = []
        self.plain_text = ""  # what set_plain/append showed; "" once rendered
        self._end: QTextCursor | None = None
        self._fences = FenceStream()
        self._formats: dict[str, QTextCharFormat] | None = None
        self.document().documentLayout().documentSizeChanged.connect(self._on_size_changed)

    def set_markdown(self, text: str, renderer: MarkdownRenderer) -> None:
        """Render now (short messages; long ones go through the view's render queue)."""
        self.adopt(RenderJob(renderer, text, self.font()).run())

    def adopt(self, job: RenderJob) -> None:
        """Show a document rendered off-screen: one layout instead of one per edit."""
        job.document.setParent(self)  # the previous one, if ours, is deleted by Qt
        self.setDocument(job.document)
        job.document.documentLayout().documentSizeChanged.connect(self._on_size_changed)
        self.code_blocks = job.blocks
        self.plain_text = ""
        self._end = None
        self._on_size_changed(None)

    def set_plain(self, text: str) -> None:
        self.plain_text = text
        self.code_blocks = []
        self.document().setPlainText(text)
        self._end = QTextCursor(self.document())
        self._end.movePosition(QTextCursor.MoveOperation.End)
        self._fences = FenceStream()

    def append(self, text: str) -> None:  # QTextEdit's name, our meaning
        """Stream ``text`` in at the end: only the last paragraph is laid out again."""
        if self._end is None:
            self.set_plain("")
        assert self._end is not None
        for run in self._fences.feed(text):
            if run.kind == FENCE:
                self._end.insertText(run.text + "\n", self._stream_formats()[FENCE])
            else:
                self._end.insertText(run.text, self._stream_formats()[run.kind])
        self.plain_text += text

    def _stream_formats(self) -> dict[str, QTextCharFormat]:
        """Prose, code and fence-label formats for streamed text (made once per body)."""
        if self._formats is None:
            palette = self.palette()
            dark = is_dark(palette)
            text = QTextCharFormat()
            code = QTextCharFormat()
            code.setFont(monospace_font())
            code.setFontFixedPitch(True)
            code.setForeground(QBrush(QColor(theme.CODE_TEXT[dark])))
            window, ink = (palette.color(QPalette.ColorRole.Window),
                           palette.color(QPalette.ColorRole.WindowText))
            code.setBackground(QBrush(QColor(mix(window, ink, 0.07))))
            label = QTextCharFormat()
            label.setForeground(QBrush(QColor(theme.CODE_MUTED[dark])))
            label.setFontPointSize(max(7.0, self.font().pointSizeF() * 0.85))
            self._formats = {"text": text, CODE: code, FENCE: label}
        return self._formats

    def _on_size_changed(self, size: QSizeF | None) -> None:
        # The size the layout reports; asking the document would force a full layout.
        if size is None:
            size = self.document().documentLayout().documentSize()
        height = math.ceil(size.height()) + 2 * self.frameWidth()
        if height != self.height():
            self.setFixedHeight(height)

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == COPY_SCHEME:
            index = int(url.path() or 0)
            if 0 <= index < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[index])
                tell(self, "Copied the code block")
        else:
            super()._on_anchor(url)

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()  # let the conversation's scroll area scroll

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height())
