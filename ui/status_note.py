"""Saying that a quiet action worked ("Copied", "Exported to ...").

Copy and Export used to give no sign at all; a person then copies twice or goes looking
for the file. The note goes to the window's status bar, where it fades after a few
seconds, so it never lingers like an error.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow, QWidget

NOTE_MS = 6000


def tell(widget: QWidget, text: str, ms: int = NOTE_MS) -> bool:
    """Show ``text`` (plain: the status bar does not read markup) in the status bar of
    ``widget``'s window; False when the widget is not in a main window."""
    window = widget.window()
    if not isinstance(window, QMainWindow):
        return False
    window.statusBar().showMessage(" ".join(text.split()), ms)
    return True
