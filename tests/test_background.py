"""Background calls: a failure with no handler of its own is logged and shown, never lost."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from ui.background import Background


def test_an_error_without_a_handler_is_logged_and_shown(qtbot, caplog) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    background = Background(window)
    results: list[object] = []

    def fails() -> None:
        raise OSError("the disk <b>is</b> full")

    with caplog.at_level(logging.ERROR, logger="hearth.ui"):
        background.run(fails, results.append)
        qtbot.waitUntil(lambda: bool(window.findChildren(QMessageBox)), timeout=5000)
    box = window.findChildren(QMessageBox)[0]
    assert box.isVisible() and "the disk <b>is</b> full" in box.text()
    assert box.textFormat() == Qt.TextFormat.PlainText
    assert results == []
    failed = [r for r in caplog.records if r.name == "hearth.ui"]
    assert failed and failed[0].exc_info and failed[0].exc_info[0] is OSError
    box.close()
    background.shutdown()


def test_a_given_handler_still_gets_the_error(qtbot) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    background = Background(window)
    errors: list[BaseException] = []
    background.run(lambda: 1 / 0, lambda _r: None, errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert isinstance(errors[0], ZeroDivisionError) and not window.findChildren(QMessageBox)
    background.shutdown()


def test_a_callback_that_raises_is_shown_not_lost(qtbot, caplog) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    background = Background(window)

    def on_done(_result: object) -> None:
        raise ValueError("the result made no sense")

    with caplog.at_level(logging.ERROR, logger="hearth.ui"):
        background.run(lambda: 42, on_done)
        qtbot.waitUntil(lambda: bool(window.findChildren(QMessageBox)), timeout=5000)
    box = window.findChildren(QMessageBox)[0]
    assert "the result made no sense" in box.text()
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)
    box.close()
    background.shutdown()


def test_a_failure_after_shutdown_is_logged_without_a_box(qtbot, caplog) -> None:
    import threading

    window = QWidget()
    qtbot.addWidget(window)
    background = Background(window)
    release = threading.Event()
    called: list[object] = []

    def fails_late() -> None:
        release.wait(5)
        raise OSError("too late to show")

    with caplog.at_level(logging.ERROR, logger="hearth.ui"):
        background.run(fails_late, called.append, called.append)
        release.set()
        background.shutdown()  # the window is closing: joins the thread
        qtbot.waitUntil(lambda: any(r.exc_info and r.exc_info[0] is OSError
                                    for r in caplog.records), timeout=5000)
    assert called == [] and not window.findChildren(QMessageBox)
