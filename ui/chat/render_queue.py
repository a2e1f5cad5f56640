"""Rendering long messages a slice at a time, between frames, newest first.

Markdown and code highlighting of a long reply take tens of milliseconds; done at once
they would freeze the window. The conversation view queues each message here and shows
its rendered pieces one per frame (:mod:`ui.chat.conversation_view`).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer

from ui.chat.markdown import MarkdownRenderer, RenderJob
from ui.chat.message_widget import MessageWidget


class RenderQueue(QObject):
    """Renders long messages a few milliseconds at a time, between frames.

    The newest message is rendered first: it is the one on screen after a reply or
    when a conversation opens at its end.
    """

    BUDGET_S = 0.008

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs: list[tuple[MessageWidget, int, RenderJob]] = []
        self.timer = QTimer(self, interval=0)
        self.timer.timeout.connect(self._on_tick)

    def add(self, widget: MessageWidget, renderer: MarkdownRenderer) -> None:
        """Queue every piece of ``widget``'s message, ahead of older work."""
        assert widget.message is not None
        self.cancel(widget)
        jobs = [(widget, i, RenderJob(renderer, piece, widget.body.font()))
                for i, piece in enumerate(widget.pieces())]
        self.jobs[:0] = jobs
        widget.needs_render = False
        self.timer.start()

    def cancel(self, widget: MessageWidget) -> None:
        self.jobs = [job for job in self.jobs if job[0] is not widget]

    def clear(self) -> None:
        self.jobs.clear()
        self.timer.stop()

    def _on_tick(self) -> None:
        """One slice: some rendering steps, or showing one rendered piece (its layout
        is the costly part) — never two pieces in the same frame."""
        deadline = time.perf_counter() + self.BUDGET_S
        while self.jobs:
            widget, index, job = self.jobs[0]
            if job.done:
                self.jobs.pop(0)
                if index < len(widget.bodies) and widget.bodies[index].plain_text == job.text:
                    widget.bodies[index].adopt(job)
                break
            job.step()
            if time.perf_counter() >= deadline:
                break
        if not self.jobs:
            self.timer.stop()
