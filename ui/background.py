"""Run slow calls off the GUI thread and deliver their results back on it.

A plain Python thread runs the call; its result or exception comes back through a Qt
signal, which Qt queues to the GUI thread because this object lives there. Each owner
(a tab) has its own :class:`Background` and calls :meth:`shutdown` when it closes, so
no thread outlives the window (or a test).

An error is never dropped: a call without ``on_error`` gets :func:`show_error`, which
logs it with its traceback and tells the person in a (non-blocking) message box; so does
an ``on_done`` or ``on_error`` that raises. A call that fails after its owner shut down
(the window is closing) is logged, with no box over a window that is going away.

This is the one way ``ui/`` runs a one-shot call off the GUI thread. Long-lived work with
progress of its own (a download, a worker process's event reader) has its own thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger("hearth.ui")


def show_error(exc: BaseException, parent: QWidget | None = None,
               what: str = "A background task") -> QMessageBox:
    """Log ``exc`` and show it, as one plain line, in a message box that does not block."""
    log.error("%s failed", what, exc_info=(type(exc), exc, exc.__traceback__))
    reason = str(exc).strip() or type(exc).__name__
    box = QMessageBox(QMessageBox.Icon.Warning, "Something went wrong",
                      f"{what} failed: {reason}", QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)  # the reason may quote a stranger's text
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


class Background(QObject):
    _finished = Signal(int, bool, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable[[Any], None],
                                         Callable[[BaseException], None] | None]] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._closed = False
        self._finished.connect(self._on_finished)

    def run(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
            on_error: Callable[[BaseException], None] | None = None,
            name: str = "hearth-background") -> threading.Thread:
        """Call ``fn()`` on a new thread; then ``on_done(result)`` or ``on_error(exc)``."""
        task_id = next(self._ids)
        self._callbacks[task_id] = (on_done, on_error)

        def work() -> None:
            try:
                result, ok = fn(), True
            except BaseException as exc:  # handed to on_error on the GUI thread
                result, ok = exc, False
            try:
                self._finished.emit(task_id, ok, result)
            except RuntimeError:  # the owner was deleted meanwhile: nobody to hand it to
                if not ok:
                    assert isinstance(result, BaseException)
                    log.error("%s failed after its window closed", name,
                              exc_info=(type(result), result, result.__traceback__))

        thread = threading.Thread(target=work, name=name, daemon=True)
        self._threads[task_id] = thread
        thread.start()
        return thread

    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads.values())

    def _on_finished(self, task_id: int, ok: bool, result: object) -> None:
        self._threads.pop(task_id, None)
        on_done, on_error = self._callbacks.pop(task_id, (None, None))
        if self._closed:
            if not ok:
                assert isinstance(result, BaseException)
                log.error("A background task failed while its window closed",
                          exc_info=(type(result), result, result.__traceback__))
            return
        try:
            if ok:
                if on_done is not None:
                    on_done(result)
                return
            assert isinstance(result, BaseException)
            if on_error is None:
                self._show(result)
            else:
                on_error(result)
        except Exception as exc:  # a failing callback is shown, not lost
            self._show(exc)

    def _show(self, exc: BaseException) -> None:
        parent = self.parent()
        show_error(exc, parent if isinstance(parent, QWidget) else None)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Wait for running calls (callers stop long ones first, e.g. pause downloads).

        No callback runs after this; a call that still fails is logged.
        """
        self._closed = True
        for thread in list(self._threads.values()):
            thread.join(timeout)
        self._callbacks.clear()
