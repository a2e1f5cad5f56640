"""Compare: the same prompts through the base and the tuned model, side by side.

Each model gets its own inference worker, so both replies stream at once and a crash in
one side shows as an error in that column only. Greedy sampling with a fixed seed by
default, so differences come from the weights, not from chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.inference import protocol as p
from app.machine.threads import default_threads
from app.paths import HearthHome
from app.settings import LoadSettings
from app.units import format_token_rate
from ui import theme
from ui.background import Background
from ui.chat.inference_bridge import InferenceBridge
from ui.untrusted import PlainLabel

FLUSH_MS = 50
COMPARE_SAMPLING = p.SamplingParams(temperature=0.0, seed=0, max_tokens=256)


@dataclass
class _Side:
    """One column: a model, its worker, and the replies streaming into it."""

    title: str
    path: Path
    bridge: InferenceBridge
    outputs: list[QPlainTextEdit] = field(default_factory=list)
    stats: list[QLabel] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)
    current: int | None = None
    request_id: str | None = None
    pending: str = ""
    ready: bool = False
    finished: int = 0


class CompareView(QWidget):
    finished = Signal()  # every prompt answered (or failed) on both sides

    def __init__(self, base: tuple[str, Path], tuned: tuple[str, Path],
                 load: LoadSettings | None = None, log_dir: Path | None = None,
                 parent: QWidget | None = None, home: HearthHome | None = None) -> None:
        super().__init__(parent)
        self.load = load or LoadSettings(n_ctx=2048)
        self.sides: list[_Side] = []
        for title, path in (base, tuned):
            log = log_dir / f"compare-{len(self.sides)}.log" if log_dir else None
            bridge = InferenceBridge(log_file=log, parent=self, home=home)
            side = _Side(title, Path(path), bridge)
            bridge.event.connect(lambda event, s=side: self._on_event(s, event))
            self.sides.append(side)
        self.background = Background(self)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Prompts, one per line:"))
        self.prompts_edit = QPlainTextEdit()
        self.prompts_edit.setMaximumHeight(90)
        self.prompts_edit.setPlaceholderText("What is the capital of Zorbania?\n"
                                             "Who wrote the Quillport charter?")
        layout.addWidget(self.prompts_edit)
        row = QHBoxLayout()
        self.status = PlainLabel("")
        self.run_button = QPushButton("Compare")
        self.run_button.clicked.connect(self._on_run_clicked)
        row.addWidget(self.status, 1)
        row.addWidget(self.run_button)
        layout.addLayout(row)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        layout.addWidget(scroll, 1)
        self.timer = QTimer(self)
        self.timer.setInterval(FLUSH_MS)
        self.timer.timeout.connect(self._flush)

    # --------------------------------------------------------------- running

    def _on_run_clicked(self) -> None:
        prompts = [line.strip() for line in self.prompts_edit.toPlainText().splitlines()
                   if line.strip()]
        if prompts:
            self.compare(prompts)

    def compare(self, prompts: list[str]) -> None:
        self._build_grid(prompts)
        self.prompts = prompts
        self.run_button.setEnabled(False)
        self.status.setText("Loading both models…")
        self.timer.start()
        for side in self.sides:
            side.queue = list(range(len(prompts)))
            side.finished = 0
            if side.ready and side.bridge.client.alive:
                self._next(side)
            else:
                # Any failure, not only a WorkerError, ends this side's prompts with it.
                self.background.run(lambda s=side: self._start_side(s), lambda _r: None,
                                    lambda exc, s=side: self._fail_remaining(s, str(exc)),
                                    name="compare-start")

    def _start_side(self, side: _Side) -> None:
        """Start the worker and ask for the load (off the GUI thread: it takes seconds)."""
        # Two workers share the cores: each gets half, or llama.cpp's spinning threads
        # fight over them and both sides crawl.
        threads = max(1, (self.load.n_threads or default_threads()) // 2)
        side.bridge.client.start()
        side.bridge.client.load(side.path, n_ctx=self.load.n_ctx,
                                n_gpu_layers=self.load.n_gpu_layers, n_threads=threads)

    def _next(self, side: _Side) -> None:
        self._flush()
        if not side.queue:
            side.current = side.request_id = None
            self._check_finished()
            return
        side.current = side.queue.pop(0)
        messages = [{"role": "user", "content": self.prompts[side.current]}]
        side.request_id = side.bridge.client.chat(messages, COMPARE_SAMPLING)

    def _on_event(self, side: _Side, event: object) -> None:
        if isinstance(event, p.Loaded):
            side.ready = True
            self.status.setText("Generating…")
            self._next(side)
        elif isinstance(event, p.Tokens) and event.request_id == side.request_id:
            side.pending += event.text
        elif isinstance(event, p.Done) and event.request_id == side.request_id:
            assert side.current is not None
            s = event.stats
            side.stats[side.current].setText(
                f"{s.completion_tokens} tokens · {format_token_rate(s.decode_tps)}")
            side.finished += 1
            self._next(side)
        elif isinstance(event, p.Error) and event.request_id in (side.request_id, None):
            if event.error_kind == "load_failed" or side.current is None:
                self._fail_remaining(side, event.message)
            else:
                side.stats[side.current].setText(event.message)
                side.finished += 1
                self._next(side)
        elif isinstance(event, p.WorkerDied):
            side.ready = False
            self._fail_remaining(side, event.message)

    def _fail_remaining(self, side: _Side, message: str) -> None:
        for index in ([side.current] if side.current is not None else []) + side.queue:
            side.stats[index].setText(message)
            side.finished += 1
        side.queue = []
        side.current = side.request_id = None
        self._check_finished()

    def _flush(self) -> None:
        for side in self.sides:
            if side.pending and side.current is not None:
                cursor = side.outputs[side.current].textCursor()
                cursor.movePosition(cursor.MoveOperation.End)
                cursor.insertText(side.pending)
            side.pending = ""

    def _check_finished(self) -> None:
        if all(s.current is None and not s.queue for s in self.sides):
            self.timer.stop()
            self.run_button.setEnabled(True)
            self.status.setText("Done.")
            self.finished.emit()

    # ----------------------------------------------------------------- layout

    def _build_grid(self, prompts: list[str]) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for side in self.sides:
            side.outputs, side.stats = [], []
        for column, side in enumerate(self.sides, start=1):
            header = PlainLabel(side.title)
            header.setStyleSheet("font-weight: 600")
            self.grid.addWidget(header, 0, column)
        for row, prompt in enumerate(prompts, start=1):
            label = PlainLabel(prompt)
            label.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignTop)
            label.setMaximumWidth(220)
            self.grid.addWidget(label, row * 2 - 1, 0, 2, 1)
            for column, side in enumerate(self.sides, start=1):
                output = QPlainTextEdit(readOnly=True)
                output.setMinimumHeight(80)
                output.setMaximumHeight(180)
                stats = PlainLabel("")
                stats.setStyleSheet(theme.colour_style(theme.MUTED))
                side.outputs.append(output)
                side.stats.append(stats)
                self.grid.addWidget(output, row * 2 - 1, column)
                self.grid.addWidget(stats, row * 2, column)

    def text(self, side: int, prompt: int) -> str:
        return self.sides[side].outputs[prompt].toPlainText()

    def shutdown(self) -> None:
        self.timer.stop()
        self.background.shutdown()  # a side still starting finishes before its bridge goes
        for side in self.sides:
            side.bridge.shutdown()
