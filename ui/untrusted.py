"""Showing text that came from outside: as text, never as markup that acts.

Model replies, model and file names, GGUF metadata, hub repository ids, error messages
that quote them, dataset lines and run records are written by strangers. Qt renders
rich text wherever it is allowed to (a QLabel guesses, a tooltip guesses, a
QTextBrowser takes HTML), and rich text pulls resources: ``<img src=/dev/zero>`` or
Markdown's ``![x](/dev/zero)`` makes the document read that file, on the GUI thread,
until memory runs out. So, in one place:

- :class:`SafeTextDocument` refuses every resource (the app puts no images in its
  documents): its ``loadResource`` is where Qt would otherwise read a local file, even
  after a view declined. :class:`SafeTextBrowser` uses one, refuses too, and opens a
  link only on a click and only for http(s) (:func:`open_link`).
- :class:`PlainLabel` shows its text literally; :func:`esc` escapes a stranger's text
  for the few labels that keep their own bold or colour (and say ``RichText``, so
  nothing is guessed); :func:`tooltip` does the same for tooltips, which always guess;
  :func:`warn` is a message box that shows its text literally.

(Qt 6.1's ``QTextDocument.setDefaultResourceProvider`` would close this for every
document at once, labels included, but PySide6 does not expose it.)
"""

from __future__ import annotations

import html
import logging
from functools import lru_cache

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices, QImage, QTextDocument
from PySide6.QtWidgets import QLabel, QMessageBox, QTextBrowser, QWidget

log = logging.getLogger("hearth.ui")
LINK_SCHEMES = ("http", "https")


def esc(text: object) -> str:
    """``text`` escaped for a place that takes HTML."""
    return html.escape(str(text), quote=True)


def tooltip(text: str) -> str:
    """A tooltip that shows ``text`` literally (a plain string would be guessed at)."""
    return f"<p style='white-space:pre-wrap'>{esc(text)}</p>" if text else ""


def refuse_resource(kind: int, url: QUrl) -> object:
    """What a safe document gets for any resource it names: nothing read, anywhere.

    An image gets a small grey square, not an empty value: on an empty one Qt's image
    handler tries ``QImage.load(name)`` itself, reading the file after all."""
    log.debug("refused a document resource: %s", url.toString()[:200])
    if kind == QTextDocument.ResourceType.ImageResource.value:
        return _placeholder()
    return b""


@lru_cache(maxsize=1)
def _placeholder() -> QImage:
    image = QImage(12, 12, QImage.Format.Format_ARGB32)
    image.fill(QColor(128, 128, 128, 90))
    return image


class SafeTextDocument(QTextDocument):
    """A document that loads no resource: images in its text stay unloaded placeholders."""

    def loadResource(self, kind: int, url: QUrl) -> object:
        return refuse_resource(kind, url)


def open_link(url: QUrl) -> bool:
    """Open ``url`` in the browser if it is http(s); anything else (file:, data:, a
    custom scheme a stranger wrote) is ignored."""
    if url.scheme().lower() in LINK_SCHEMES and url.host():
        return QDesktopServices.openUrl(url)
    return False


class SafeTextBrowser(QTextBrowser):
    """A read-only text view for strangers' text: no resource loads, links on click only.

    Navigation is off (``setOpenLinks(False)``): ``anchorClicked`` is the one way a link
    leaves the view, and :func:`open_link` decides. Subclasses that answer their own
    schemes (a code block's Copy) override :meth:`_on_anchor` and fall back to it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDocument(SafeTextDocument(self))
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)

    def loadResource(self, kind: int, url: QUrl) -> object:
        return refuse_resource(kind, url)

    def _on_anchor(self, url: QUrl) -> None:
        open_link(url)


class PlainLabel(QLabel):
    """A label whose text is shown literally, whatever it contains."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)


def ask(parent: QWidget | None, title: str, text: str) -> bool:
    """A Yes/No question (No by default), with ``text`` shown literally."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text,
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    return box.exec() == QMessageBox.StandardButton.Yes


def warn(parent: QWidget | None, title: str, text: str) -> None:
    """QMessageBox.warning, with ``text`` (often quoting a stranger's) shown literally."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok,
                      parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.exec()
