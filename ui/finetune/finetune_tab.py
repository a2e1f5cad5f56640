"""The Fine-tune tab: from a model and some examples to a better model, in one window.

Three pages: **Set up** (:class:`ui.finetune.setup_page.SetupPage`, under the
:class:`ui.finetune.resume_banner.ResumeBanner`), **Training**
(:class:`ui.finetune.training_view.TrainingView`: progress, live loss chart, Cancel /
Resume, the summary with *Chat with it* and *Compare*) and **History**
(:class:`ui.finetune.run_history.RunHistoryView`). This module wires them to a run's
worker (:class:`ui.finetune.training_bridge.TrainingBridge`); what a run is, which runs
can be resumed and which to offer live in :mod:`app.finetune.runs`.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QMessageBox, QTabWidget, QVBoxLayout, QWidget

from app.chat.corrections import CorrectionStore
from app.errors import HearthError
from app.finetune import protocol as tp
from app.finetune.client import TrainingClient
from app.finetune.runs.delete import run_files
from app.finetune.runs.folder import RunError, RunFolder, create_run, list_runs, run_info
from app.finetune.runs.records import RunSummary
from app.finetune.runs.resume import resume_offer
from app.finetune.runs.status import RunStatus
from app.finished_run import adopt_run
from app.machine.memory import free_memory_bytes
from app.machine.profile import Machine
from app.models.library import ModelRecord
from app.units import format_bytes
from app.workspace import Workspace
from ui.background import Background
from ui.finetune.compare_dialog import CompareDialog
from ui.finetune.compare_view import CompareView
from ui.finetune.resume_banner import ResumeBanner
from ui.finetune.run_history import RunHistoryView
from ui.finetune.setup_page import SetupPage
from ui.finetune.training_bridge import TrainingBridge
from ui.finetune.training_view import TrainingView
from ui.untrusted import warn

PAGE_SETUP, PAGE_TRAINING, PAGE_HISTORY = range(3)


class FineTuneTab(QWidget):
    chat_requested = Signal(str)  # library name of a tuned model to open a chat with
    run_started = Signal(str)  # run id
    run_ended = Signal(str, str)  # run id, status: finished, cancelled, failed, interrupted

    def __init__(self, workspace: Workspace, corrections: CorrectionStore | None = None,
                 unload_chat: Callable[[], None] | None = None,
                 reload_chat: Callable[[], None] | None = None,
                 memory_available: Callable[[], int] | None = None,
                 machine: Machine | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.home = workspace.home
        self.library = workspace.library
        # The window owns "the chat model was unloaded for training": reload_chat gives
        # back only what unload_chat took, so a run's end may always call it.
        self.unload_chat = unload_chat
        self.reload_chat = reload_chat
        self.memory_available = memory_available or (
            free_memory_bytes)
        self.bridge: TrainingBridge | None = None
        self.shown_run: str | None = None  # the run on the Training page
        self.tuned_model: ModelRecord | None = None
        self.compare_dialog: CompareDialog | None = None
        self.compare_view: CompareView | None = None
        self._reaper = Background(self)  # waits for each ended run's worker to exit

        self.setup = SetupPage(self.home, self.library, machine or Machine.detect(),
                               self.memory_available, self.is_training, corrections)
        self.setup.start_requested.connect(self._on_start_requested)
        self.dataset_checked = self.setup.dataset_checked
        self.resume_banner = ResumeBanner()
        self.resume_banner.resume_requested.connect(self.resume)
        self.resume_banner.dismissed.connect(lambda: self._remember_closed_run(None))
        setup_page = QWidget()
        setup_layout = QVBoxLayout(setup_page)
        setup_layout.addWidget(self.resume_banner)
        setup_layout.addWidget(self.setup, 1)
        self.training = TrainingView()
        self.training.cancel_button.clicked.connect(self.cancel)
        self.training.resume_button.clicked.connect(self._on_resume_clicked)
        self.training.chat_button.clicked.connect(self._on_chat_clicked)
        self.training.compare_button.clicked.connect(self._on_compare_clicked)
        self.training.new_run_button.clicked.connect(
            lambda: self.pages.setCurrentIndex(PAGE_SETUP))
        self.history = RunHistoryView(self.home, self.library)
        self.history.open_requested.connect(self._on_open_run)
        self.history.resume_requested.connect(self.resume)
        self.history.compare_requested.connect(self.open_compare)
        self.history.deleted.connect(self._on_run_deleted)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.pages = QTabWidget()
        self.pages.setDocumentMode(True)
        self.pages.addTab(setup_page, "Set up")
        self.pages.addTab(self.training, "Training")
        self.pages.addTab(self.history, "History")
        self.pages.setTabEnabled(PAGE_TRAINING, False)
        self.pages.currentChanged.connect(self._on_page_changed)
        layout.addWidget(self.pages)
        self.setAcceptDrops(True)
        self._offer_resume()

    # ============================================================ the set-up page

    def refresh_models(self) -> None:
        """Re-read the library (call after models are added or removed)."""
        self.setup.refresh_models()

    def set_model(self, name: str) -> bool:
        """Pick ``name`` as the base model (e.g. the one in the current chat)."""
        return self.setup.set_model(name)

    def current_model(self) -> ModelRecord | None:
        return self.setup.current_model()

    def refresh_corrections(self, count: int | None = None) -> None:
        """Connect to DatasetsView.changed (see :meth:`SetupPage.refresh_corrections`)."""
        self.setup.refresh_corrections(count)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            self.pages.setCurrentIndex(PAGE_SETUP)
            self.setup.load_file(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()

    # ================================================================ training

    def is_training(self) -> bool:
        return self.bridge is not None and self.bridge.alive

    def _on_start_requested(self) -> None:
        self.start()

    def start(self) -> str | None:
        """Create a run from the set-up page and start it; returns its id."""
        if self.is_training():
            return None
        request = self.setup.run_request()
        if request is None:
            return None
        if not self._make_room(request.plan.estimate.peak_memory_bytes):
            return None
        try:
            run_id = create_run(self.home, request.base, request.dataset, request.settings,
                                request.export)
        except (OSError, HearthError) as exc:
            self.setup.start_error.setText(f"The run could not be created: {exc}")
            self._restore_chat()
            return None
        self._attach(run_id, resuming=False)
        return run_id

    def _make_room(self, needed: int) -> bool:
        """When memory is short, offer to unload the chat model; False cancels the start."""
        available = self.memory_available()
        if needed <= available:
            return True
        need, have = format_bytes(needed), format_bytes(available)
        if self.unload_chat is not None:
            answer = QMessageBox.question(
                self, "Free memory for training?",
                f"Training needs about {need} and {have} are free. Unload the chat model "
                "while it trains? It is loaded again when training ends.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
                | QMessageBox.StandardButton.Cancel)
            if answer == QMessageBox.StandardButton.Cancel:
                return False
            if answer == QMessageBox.StandardButton.Yes:
                self.unload_chat()
            return True
        answer = QMessageBox.question(
            self, "Memory is short",
            f"Training needs about {need} and only {have} are free; it may be slow or run "
            "out of memory. Start anyway?")
        return answer == QMessageBox.StandardButton.Yes

    def _restore_chat(self) -> None:
        if self.reload_chat is not None:
            self.reload_chat()

    def _attach(self, run_id: str, resuming: bool) -> None:
        """Show ``run_id`` on the Training page and start its worker."""
        self._show_run(run_id)
        self.resume_banner.withdraw()
        self._remember_closed_run(None)
        self.bridge = TrainingBridge(self.home, run_id, self)
        self.bridge.event.connect(self._on_event)
        self.training.status_label.setText("Resuming from the last checkpoint…" if resuming
                                           else "Starting the training worker…")
        self.training.status_label.setStyleSheet("")
        self.training.set_buttons(self.training.cancel_button)
        self.setup.start_button.setEnabled(False)
        self.history.busy_run = run_id
        try:
            self.bridge.start()
        except OSError as exc:
            self._on_event(tp.WorkerDied(None, [], f"The training worker did not start: "
                                                     f"{exc}"))
            return
        self.history.refresh()
        self.run_started.emit(run_id)

    def _show_run(self, run_id: str) -> RunFolder:
        """Fill the Training page from the run's folder (the events so far)."""
        self.shown_run = run_id
        self.tuned_model = None
        folder = RunFolder.of(self.home, run_id)
        self.training.reset(folder.spec().title)
        self.pages.setTabEnabled(PAGE_TRAINING, True)
        self.pages.setCurrentIndex(PAGE_TRAINING)
        for event in folder.events():
            self.training.apply(event)
        return folder

    def _on_event(self, event: object) -> None:
        if self.bridge is None or self.shown_run != self.bridge.run_id:
            return
        self.training.apply(event)
        if isinstance(event, tp.Cancelled):
            self._ended(RunStatus.CANCELLED, f"Cancelled at step {event.step}. The "
                        "checkpoint is saved: Resume continues from there.")
        elif isinstance(event, tp.Finished):
            self._finished(event.summary)
        elif isinstance(event, tp.Error):
            self._ended(RunStatus.FAILED, event.message)
        elif isinstance(event, tp.WorkerDied):
            checkpoint = RunFolder(self.home.runs / self.bridge.run_id).checkpoint_step()
            self._ended(RunStatus.INTERRUPTED, (event.cause or event.message)
                        + " Resume continues from the last checkpoint"
                        + (f" (step {checkpoint})." if checkpoint else "."))

    def _ended(self, status: RunStatus, message: str) -> None:
        """Show the outcome now; the rest once the worker has exited (off the GUI thread:
        it exits right after its last event, and one that does not is killed in 5 s)."""
        run_id = self.shown_run or ""
        resumable = status != RunStatus.FINISHED and bool(run_id) and \
            RunFolder(self.home.runs / run_id).resumable(status)
        self.training.show_outcome(status, message, resumable=resumable)
        self.history.busy_run = None
        self.history.refresh()
        client = self.bridge.client if self.bridge is not None else None
        self._reaper.run(lambda: _reap(client),
                         lambda _none: self._after_exit(run_id, status), name="run-exit")

    def _after_exit(self, run_id: str, status: RunStatus) -> None:
        self._restore_chat()  # the worker's memory is free now
        self.setup.update_plan()
        # A crash is offered for Resume at the next start; an outcome the person saw or
        # chose is not.
        self._remember_closed_run(run_id if status == RunStatus.INTERRUPTED else None)
        self.run_ended.emit(run_id, str(status))

    def _finished(self, summary: RunSummary) -> None:
        adopted = adopt_run(self.library, self.home, summary)
        if adopted.problem:
            self.training.log(adopted.problem)
        self.tuned_model = adopted.model
        self.training.show_summary(summary, self.tuned_model)
        self.refresh_models()  # the tuned model can be the base of the next run
        name = self.tuned_model.name if self.tuned_model else "the adapter"
        self._ended(RunStatus.FINISHED, f"Done: {name} is ready.")
        if self.tuned_model is None:
            self.training.chat_button.hide()
            self.training.compare_button.hide()

    # ================================================================ actions

    def cancel(self) -> None:
        if self.bridge is not None and self.bridge.alive:
            self.bridge.cancel()
            self.training.cancel_button.setEnabled(False)
            self.training.status_label.setText("Stopping after this step and saving a "
                                               "checkpoint…")

    def _on_resume_clicked(self) -> None:
        if self.shown_run:
            self.resume(self.shown_run)

    def resume(self, run_id: str) -> bool:
        """Continue a run that failed or was stopped, from its last checkpoint."""
        if self.is_training():
            return False
        try:
            RunFolder.of(self.home, run_id)
        except RunError as exc:
            warn(self, "Cannot resume", str(exc))
            return False
        self._attach(run_id, resuming=True)
        return True

    def _remember_closed_run(self, run_id: str | None) -> None:
        """Remember the run a window close (or a crash) stopped, for the next start's
        offer (see :mod:`app.finetune.runs.resume`)."""
        ui = self.workspace.settings.ui
        if ui.finetune_run_to_offer == run_id:
            return
        ui.finetune_run_to_offer = run_id
        with contextlib.suppress(OSError):  # only the offer is lost; the run itself is safe
            self.workspace.save_settings()

    def _offer_resume(self) -> None:
        """After a restart: offer the newest run that stopped before it finished."""
        offer = resume_offer(list_runs(self.home),
                             self.workspace.settings.ui.finetune_run_to_offer)
        if offer is None:
            self._remember_closed_run(None)
            return
        self.resume_banner.offer(offer)

    def _on_chat_clicked(self) -> None:
        if self.tuned_model is not None:
            self.chat_requested.emit(self.tuned_model.name)

    def _on_compare_clicked(self) -> None:
        if self.shown_run:
            self.open_compare(self.shown_run)

    def _on_page_changed(self, index: int) -> None:
        if index == PAGE_HISTORY:
            self.history.refresh()  # runs started from the CLI meanwhile appear too

    def _on_open_run(self, run_id: str) -> None:
        if self.is_training() and self.bridge is not None and run_id != self.bridge.run_id:
            QMessageBox.information(self, "A run is training",
                                    "Open other runs when this one has ended.")
            return
        if self.is_training():
            self.pages.setCurrentIndex(PAGE_TRAINING)
            return
        self.open_run(run_id)

    def open_run(self, run_id: str) -> None:
        """Show a past run: its chart, log and (when finished) summary."""
        folder = self._show_run(run_id)
        info = run_info(folder)
        files = run_files(self.home, self.library, run_id)
        view = self.training
        if files.summary is not None and info.status == RunStatus.FINISHED:
            self.tuned_model = files.model
            view.show_summary(files.summary, files.model)
            view.show_outcome(RunStatus.FINISHED, "Finished.")
            view.compare_button.setEnabled(files.gguf.exists())
            view.chat_button.setEnabled(files.model is not None)
        elif info.resumable:
            view.show_outcome(info.status, f"This run is {info.status}; Resume continues "
                              "from its last checkpoint.", resumable=True)
        elif info.status == RunStatus.REFUSED:
            view.show_outcome(info.status, "The teach gate refused this run, so nothing "
                              "was exported: " + (info.refusal or "see its report") + ".")
        else:
            view.set_buttons(view.new_run_button)
            view.status_label.setText(f"This run is {info.status}.")

    def _on_run_deleted(self, run_id: str) -> None:
        if self.shown_run == run_id:
            self.shown_run = None
            self.pages.setTabEnabled(PAGE_TRAINING, False)
        if self.resume_banner.run_id == run_id:
            self.resume_banner.withdraw()
        self.refresh_models()

    def open_compare(self, run_id: str) -> CompareView | None:
        """Open the base and tuned models side by side, primed with validation prompts."""
        files = run_files(self.home, self.library, run_id)
        if not files.gguf.exists():
            return None
        if self.compare_dialog is not None:
            self.compare_dialog.close()
        dialog = CompareDialog(self.home, files, self.workspace.settings.load, self)
        dialog.destroyed.connect(self._on_compare_closed)
        self.compare_dialog, self.compare_view = dialog, dialog.view
        dialog.show()
        return dialog.view

    def _on_compare_closed(self, *_args: object) -> None:
        self.compare_dialog = None

    def shutdown(self) -> None:
        """Stop training (with a checkpoint) and any compare workers; for window close.
        A run stopped here is offered for Resume at the next start."""
        if self.bridge is not None and self.bridge.alive:
            self._remember_closed_run(self.bridge.run_id)
            self.bridge.shutdown(timeout=10)
        if self.compare_dialog is not None and self.compare_view is not None:
            self.compare_view.shutdown()
            self.compare_dialog.close()
        self.setup.shutdown()
        self._reaper.shutdown()


def _reap(client: TrainingClient | None) -> None:
    """Wait for an ended run's worker to exit; kill one that has not after 5 s."""
    if client is None:
        return
    try:
        client.wait(5)
    except subprocess.TimeoutExpired:
        client.kill()
