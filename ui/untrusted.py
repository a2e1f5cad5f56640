"""Showing text that came from outside: as text, never as markup that acts.

Model replies, model and file names, GGUF metadata, hub repository ids, error messages
that quote them, dataset lines and run records are written by strangers. Qt renders
rich text wherever it is allowed to (a QLabel guesses, a tooltip guesses, a
QTextBrowser takes HTML), and rich text pulls resources: ``<img src=/dev/zero>`` or
Markdown's ``![x](/dev/zero)`` makes the document read that file, on the GUI thread,
until memory runs out. So, in one place:

- :func:`install_resource_guard` gives every QTextDocument in the process a resource
  provider that refuses every URL (the app ships no images in its documents), so no
  label, tooltip, message box or browser reads a file or a URL because of its text.
- :class:`SafeTextDocument` and :class:`SafeTextBrowser` refuse resources themselves
  too (a document's own ``loadResource`` reads local files when a view declines), and
  the browser opens links only on a click and only for http(s).
- :class:`PlainLabel` shows its text literally; :func:`esc` escapes a stranger's text
  for the few labels that keep their own bold or colour; :func:`tooltip` does the same
  for tooltips, which otherwise guess.
"""

from __future__ import annotations

import html
import logging

from PySide6.QtCore import QUrl, Qt
from PySide6.QtGui import QDesktopServices, QTextDocument
from PySide6.QtWidgets import QLabel, QMessageBox, QTextBrowser, QWidget

log = logging.getLogger("hearth.ui")
LINK_SCHEMES = ("http", "https")


def esc(text: object) -> str:
    """``text`` escaped for a place that takes HTML."""
    return html.escape(str(text), quote=True)


def tooltip(text: str) -> str:
    """A tooltip that shows ``text`` literally (a plain string would be guessed at)."""
    return f"<p style='white-space:pre-wrap'>{esc(text)}</p>" if text else ""


def refuse_resource(url: QUrl) -> bytes:
    """The resource provider of every document: nothing, for every URL.

    A valid empty value (not None) stops Qt from falling back to reading the file."""
    log.debug("refused a document resource: %s", url.toString()[:200])
    return b""


def install_resource_guard() -> None:
    """Make every QTextDocument without a provider of its own use :func:`refuse_resource`.

    Called once when the app starts (ui.app) and by MainWindow, so a test window is
    guarded like the real one."""
    QTextDocument.setDefaultResourceProvider(refuse_resource)


class SafeTextDocument(QTextDocument):
    """A document that loads no resource: images in its text stay unloaded placeholders."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setResourceProvider(refuse_resource)

    def loadResource(self, _type: int, url: QUrl) -> object:  # noqa: N802 - Qt's name
        return refuse_resource(url)


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

    def loadResource(self, _type: int, url: QUrl) -> object:  # noqa: N802 - Qt's name
        return refuse_resource(url)

    def _on_anchor(self, url: QUrl) -> None:
        open_link(url)


class PlainLabel(QLabel):
    """A label whose text is shown literally, whatever it contains."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)


def warn(parent: QWidget | None, title: str, text: str) -> None:
    """QMessageBox.warning, with ``text`` (often quoting a stranger's) shown literally."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok,
                      parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.exec()
