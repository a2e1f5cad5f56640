"""Starting the GUI: the QApplication, the workspace, the main window."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from app.db import DatabaseBusy
from app.errors import ExitCode, HearthError
from app.models.library import LibraryError
from app.workspace import HomeLocked, Workspace, open_workspace


def run_app(home: str | None = None) -> int:
    from ui.main_window import MainWindow
    qt_app = QApplication.instance() or QApplication(sys.argv)
    qt_app.setApplicationName("Hearth")
    qt_app.setOrganizationName("Hearth")
    workspace = open_for_gui(home)
    if workspace is None:
        return ExitCode.FAILED
    sys.excepthook = error_hook(sys.excepthook)
    try:
        window = MainWindow(workspace)
        window.show()
        show_notices(workspace, window)
        window.start()
        return qt_app.exec()
    finally:
        workspace.close()


def open_for_gui(home: str | None) -> Workspace | None:
    """The workspace for the window, or None after telling the person why not.

    A second window on one data folder is refused with the holder's process id; a
    database another program keeps locked can be retried once that program is closed.
    """
    while True:
        try:
            return open_workspace(home, lock="the Hearth app")
        except HomeLocked as exc:
            message(QMessageBox.Icon.Warning, "Hearth is already open", str(exc))
            return None
        except DatabaseBusy as exc:
            answer = message(QMessageBox.Icon.Warning, "The database is busy", str(exc),
                             QMessageBox.StandardButton.Retry
                             | QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Retry:
                return None
        except (OSError, RuntimeError, LibraryError) as exc:
            message(QMessageBox.Icon.Critical, "Hearth cannot open its data folder",
                    str(exc))
            return None


def show_notices(workspace: Workspace, parent: QWidget | None = None) -> None:
    """Tell the person once what was repaired while opening (a damaged file kept aside)."""
    if workspace.notices:
        message(QMessageBox.Icon.Warning, "Hearth repaired its data folder",
                "\n\n".join(workspace.notices), parent=parent)
        workspace.notices.clear()


def message(icon: QMessageBox.Icon, title: str, text: str,
            buttons: QMessageBox.StandardButton = QMessageBox.StandardButton.Ok,
            parent: QWidget | None = None) -> QMessageBox.StandardButton:
    """A modal message shown as plain text: paths and error texts are never markup."""
    box = QMessageBox(icon, title, text, buttons, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setObjectName("hearth-message")
    return QMessageBox.StandardButton(box.exec())


Hook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


_open_boxes: set[QMessageBox] = set()
"""Error boxes on screen (see :func:`error_hook`)."""


def error_hook(previous: Hook) -> Hook:
    """``sys.excepthook`` for the window: an error meant for the person (a HearthError,
    such as hearth.db held by another program mid-session) that escapes a slot is shown
    in a message box that says what to do, instead of only a traceback on stderr. Any
    other exception is a bug and goes to ``previous`` as before."""

    def hook(kind: type[BaseException], exc: BaseException,
             trace: TracebackType | None) -> None:
        if not isinstance(exc, HearthError) or QApplication.instance() is None:
            previous(kind, exc, trace)
            return
        logging.getLogger("hearth.ui").warning("%s", exc, exc_info=(kind, exc, trace))
        box = QMessageBox(QMessageBox.Icon.Warning, "Hearth could not do that", str(exc),
                          QMessageBox.StandardButton.Ok, QApplication.activeWindow())
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setObjectName("hearth-error")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        # With no window active (Hearth in the background) the box has no parent to keep
        # it: held here until it is closed, or it vanished as this function returned.
        _open_boxes.add(box)
        box.finished.connect(lambda _result: _open_boxes.discard(box))
        box.open()

    return hook
