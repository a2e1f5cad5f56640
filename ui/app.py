"""Starting the GUI: the QApplication, the workspace, the main window."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication

from app.workspace import open_workspace


def run_app(home: str | None = None) -> int:
    from ui.main_window import MainWindow
    qt_app = QApplication.instance() or QApplication(sys.argv)
    qt_app.setApplicationName("Hearth")
    qt_app.setOrganizationName("Hearth")
    workspace = open_workspace(home)
    window = MainWindow(workspace)
    window.show()
    window.start()
    code = qt_app.exec()
    workspace.close()
    return code
