"""Teach, in the window: one button, its progress, the gate's report, Accept or Discard.

The panel sits under the collected corrections (Datasets tab); the chat window's Teach
button starts the same panel. A run that passes the gate can be accepted: its model
becomes the active version of the base (app.teach.versions.VersionStore) and the chat switches
to it. The versions under the panel (:mod:`ui.teach.versions_box`) roll back to any
earlier version, or to the base, and merge a version into the weights.

A run the gate refuses is thrown away at once (its adapter too) and can never be
accepted; Teach then stays off for that base until its corrections change, since the
same corrections would be refused again (:mod:`app.teach.refusal`), and the panel offers
to remove the corrections the gate named. The panel says how far a run is
(:meth:`TeachPanel.status_text`) for the window's status-bar button.
"""

from __future__ import annotations

import contextlib
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.corrections import CorrectionStore
from app.errors import HearthError
from app.finetune import protocol as tp
from app.finetune.runs.records import RunSummary
from app.teach.refusal import NOTHING_CHANGED, Refusal, Refusals, Snapshot, snapshot
from app.teach.run import (
    corrections_for,
    describe,
    discard_result,
    gate_passed,
    keep_result,
    report_lines,
    start_teach,
)
from app.teach.versions import VersionStore
from app.units import count
from app.workspace import Workspace
from ui.finetune.training_bridge import TrainingBridge
from ui.teach.estimate_view import EstimateLabel, RunClock
from ui.teach.refusal import RefusalBox
from ui.teach.versions_box import VersionsBox

TEACH_TIP = ("Train on the corrections, check what was learned and kept, then accept or "
             "discard")
CHECK_PHASES = ("checking", "adapter_check")
"""Phases after training: the gate's check, then llama.cpp's check of the adapter."""


class TeachPanel(QWidget):
    """Teach the corrections of one base model; the person accepts or discards the result."""

    finished = Signal(object)  # the run's RunSummary (with its "teach" report)
    ended = Signal(str)  # a run ended: how, in one sentence (passed, refused, failed...)
    state_changed = Signal()  # running, its progress, or whether Teach can start changed
    active_changed = Signal(str, str)  # base, the model the chat should use now
    corrections_changed = Signal()  # the panel removed corrections (the gate's culprits)
    merged = Signal(str)  # a version that is now a stand-alone GGUF

    def __init__(self, workspace: Workspace, corrections: CorrectionStore,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.corrections = corrections
        self.versions = VersionStore(workspace.home)
        self.base: str | None = None
        self.bridge: TrainingBridge | None = None
        self.summary: RunSummary | None = None
        """A passed (or report-less) result awaiting Accept or Discard."""
        self.refusals = Refusals(workspace.home, corrections, self.versions)
        self.total_steps = 0
        self.clock = RunClock(self)
        self.clock.ticked.connect(lambda: self.phase.setText(self.clock.text()))  # running
        self._run_base: str | None = None
        self._trained_on: Snapshot = ()
        self._percent: int | None = None
        self._checking = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._build_run(layout)
        self._build_result(layout)
        self._build_versions(layout)
        self._idle()

    def _build_run(self, layout: QVBoxLayout) -> None:
        row = QHBoxLayout()
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setStyleSheet("font-weight: 600")
        self.teach_button = QPushButton("Teach")
        self.teach_button.setToolTip(TEACH_TIP)
        self.teach_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel)
        self.estimate_label = EstimateLabel(self.workspace, self.corrections, self.versions)
        row.addWidget(self.title, 1)
        row.addWidget(self.estimate_label, 4)
        row.addWidget(self.cancel_button)
        row.addWidget(self.teach_button)
        layout.addLayout(row)
        self.phase = QLabel()
        self.phase.setTextFormat(Qt.TextFormat.PlainText)
        self.phase.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        layout.addWidget(self.phase)
        layout.addWidget(self.progress)

    def _build_result(self, layout: QVBoxLayout) -> None:
        # Shown while Teach is off after a refusal: the reasons, and what to do instead.
        self.refusal_box = RefusalBox(self.corrections, self.versions)
        self.refusal_box.removed.connect(self._on_culprits_removed)
        self.remove_button = self.refusal_box.remove_button
        layout.addWidget(self.refusal_box)
        self.report_view = QPlainTextEdit(readOnly=True)
        self.report_view.setMaximumHeight(160)
        layout.addWidget(self.report_view)
        buttons = QHBoxLayout()
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("Use the taught version in chat")
        self.accept_button.clicked.connect(self._on_accept)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self._on_discard)
        buttons.addStretch(1)
        buttons.addWidget(self.discard_button)
        buttons.addWidget(self.accept_button)
        layout.addLayout(buttons)

    def _build_versions(self, layout: QVBoxLayout) -> None:
        self.versions_box = VersionsBox(self.workspace, self.versions)
        self.versions_box.activated.connect(self._on_activated)
        self.versions_box.merging.connect(self._on_merging)
        self.versions_box.merge_ended.connect(self._on_merge_ended)
        self.versions_box.merged.connect(self.merged)
        layout.addWidget(self.versions_box)
        # Its widgets, by the names the panel has always had.
        self.version_list = self.versions_box.version_list
        self.use_button = self.versions_box.use_button
        self.rollback_button = self.versions_box.rollback_button
        self.merge_button = self.versions_box.merge_button

    # --------------------------------------------------------------- public

    def set_base(self, name: str | None) -> None:
        """Teach this base model (a version's name means its base)."""
        if name is not None:
            name = self.versions.base_name(name)
        self.base = name
        self._idle()

    def refresh(self) -> None:
        """Re-read the corrections and versions (another view changed them)."""
        self._idle()

    def is_running(self) -> bool:
        return self.bridge is not None and self.bridge.alive

    def status_text(self) -> str:
        """How far the run is, in a word or two ("Teaching… 45%", "Checking…"); "Teach"
        when none runs. The window's status-bar button shows it."""
        if not self.is_running():
            return "Teach"
        if self._checking:
            return "Checking…"
        return f"Teaching… {self._percent}%" if self._percent is not None else "Teaching…"

    def blocked_reason(self, name: str | None = None) -> str | None:
        """Why Teach of ``name``'s base (the panel's base by default) would only repeat a
        refused run; None when it may start."""
        refusal = self._refusal(name)
        return f"{NOTHING_CHANGED}." if refusal is not None else None

    def start(self) -> None:
        if self.base is None or self.is_running():
            return
        blocked = self.blocked_reason()
        if blocked is not None:  # the same corrections would be refused the same way
            self.phase.setText(blocked)
            self._idle()
            return
        self._clear_result()
        self._percent, self._checking = None, False
        trained_on = snapshot(self.corrections, self.versions, self.base)
        try:
            record = self.workspace.library.get(self.base)
            plan = start_teach(self.workspace.home, self.workspace.library,
                               self.corrections, record)
        except HearthError as exc:  # why Teach cannot start, in words for the person
            self.phase.setText(str(exc))
            return
        self._run_base, self._trained_on = plan.base, trained_on
        self.bridge = TrainingBridge(self.workspace.home, plan.run_id, parent=self)
        self.bridge.event.connect(self._on_event)
        on_top = f" on top of {plan.continues}" if plan.continues else ""
        self.clock.start(f"Teaching {count(plan.cases, 'correction')}{on_top}…",
                         self.estimate_label.estimate)
        self.estimate_label.hide()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.teach_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bridge.start()
        self.state_changed.emit()

    def shutdown(self) -> None:
        self.clock.stop()
        self.estimate_label.shutdown()
        if self.bridge is not None:
            self.bridge.shutdown()
        self.versions_box.shutdown()

    # ------------------------------------------------------------ internals

    def _refusal(self, name: str | None = None) -> Refusal | None:
        """The refusal that still applies to ``name``'s base: its corrections unchanged."""
        base = self.base if name is None else (self.versions.base_name(name))
        return self.refusals.applying(base)

    def _idle(self) -> None:
        n = len(corrections_for(self.corrections, self.versions, self.base)) \
            if self.base else 0
        running = self.is_running()
        refusal = self._refusal()
        self.title.setText(f"Teach {self.base}: {n} correction{'s' if n != 1 else ''}"
                           if self.base else "Teach: choose a model in the chat first")
        self.teach_button.setEnabled(bool(self.base) and n > 0 and not running
                                     and refusal is None)
        self.teach_button.setToolTip(f"{NOTHING_CHANGED}." if refusal else TEACH_TIP)
        self.refusal_box.show_refusal(refusal, can_remove=not running)
        self.estimate_label.show_for(self.base if self.teach_button.isEnabled() else None)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.hide()
            self.clock.stop()
        passed = gate_passed(self.summary)
        self.accept_button.setEnabled(passed and not running)
        self.discard_button.setEnabled(self.summary is not None and not running)
        self.versions_box.show_versions(self.base)
        self.state_changed.emit()

    def _on_merging(self, name: str) -> None:
        self.phase.setText(f"Merging {name} into the weights and checking it with "
                           "llama.cpp…")
        self.progress.setRange(0, 0)
        self.progress.show()

    def _on_merge_ended(self, sentence: str) -> None:
        self.phase.setText(sentence)
        self._idle()

    def _clear_result(self) -> None:
        self.summary = None
        self.report_view.clear()

    def _on_event(self, event: Any) -> None:
        self.clock.on_event(event)  # the phase's words and the run's time
        if isinstance(event, tp.Phase):
            if event.name != "training":
                self.progress.setRange(0, 0)
            self._checking = self._checking or event.name in CHECK_PHASES
            self.state_changed.emit()
        elif isinstance(event, tp.DataReady):
            self.total_steps = event.total_steps
        elif isinstance(event, tp.Progress):
            self.progress.setRange(0, event.total_steps)
            self.progress.setValue(event.step)
            if event.total_steps:
                self._percent = min(100, round(100 * event.step / event.total_steps))
            self.state_changed.emit()
        elif self.bridge is None:
            return  # the end of a run already ended (an exit after its error)
        elif isinstance(event, tp.Finished):
            self.bridge = None
            self._on_finished(event.summary)
        elif isinstance(event, tp.Cancelled):
            self.bridge = None
            self._end("Teach was cancelled; nothing changed in the chat.")
        elif isinstance(event, tp.Error | tp.WorkerDied):
            self.bridge = None
            self._end(f"Teach failed: {event.message}")

    def _end(self, sentence: str) -> None:
        self.phase.setText(sentence)
        self._idle()
        self.ended.emit(sentence)

    def _on_finished(self, summary: RunSummary) -> None:
        """Show the report; a refused result is thrown away at once (its adapter too):
        it can never be accepted, and Teach waits for the corrections to change."""
        report = summary.teach
        self._show_report(summary)
        base = self._run_base or self.base
        if report is not None and not report.passed:
            with contextlib.suppress(OSError, ValueError):  # a run folder gone meanwhile
                discard_result(self.workspace.home, self.workspace.library, summary)
            if base:
                self.refusals.record(base, self._trained_on, report, summary.run_id)
            self.summary = None
        else:
            if base:
                self.refusals.forget(base)
            self.summary = summary
        self.finished.emit(summary)
        self._idle()
        self.ended.emit(describe(report) if report is not None else self.phase.text())

    def _show_report(self, summary: RunSummary) -> None:
        report = summary.teach
        if report is None:
            self.phase.setText("The run ended without a report.")
            return
        self.phase.setText(describe(report))
        self.report_view.setPlainText("\n".join(report_lines(report)))

    def _on_culprits_removed(self, n: int) -> None:
        self.phase.setText(f"Removed {count(n, 'correction')}: Teach trains on the rest.")
        self.corrections_changed.emit()
        self._idle()

    def _on_cancel(self) -> None:
        if self.bridge is not None:
            self.bridge.cancel()

    def _on_accept(self) -> None:
        if self.summary is None or not gate_passed(self.summary):
            return  # only a result the gate passed can become a version
        version = keep_result(self.workspace.home, self.workspace.library, self.summary,
                              accept=True)
        self.summary = None
        if version is not None:
            self.phase.setText(f"Accepted: the chat now answers with {version.name}.")
            self.active_changed.emit(version.base, version.name)
        self._idle()

    def _on_discard(self) -> None:
        if not self.summary:
            return
        discard_result(self.workspace.home, self.workspace.library, self.summary)
        self.summary = None
        self.report_view.clear()
        self.phase.setText("Discarded; the chat keeps its current version.")
        self._idle()

    def _on_activated(self, base: str, name: str) -> None:
        """A version was made active, or (``name`` is ``base``) the base rolled back to."""
        if name == base:
            self.phase.setText(f"Rolled back: the chat answers with {base} itself.")
        self.active_changed.emit(base, name)
        self._idle()
