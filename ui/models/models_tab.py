"""The Models tab: the installed library, and the hub view for finding more.

Installed models are listed with what their GGUF header says (architecture,
parameters, quantization, size, context length, chat template), where they came from,
and a green / yellow / red "fits?" verdict at the context length from the settings,
recomputed when the person changes the context here. Import (file dialog or drag and
drop) copies on a background thread; remove asks first and is refused while the model
is loaded in the worker. "Chat with this model" only emits :attr:`chat_requested`; the
main window decides what that means.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.inference.client import InferenceClient
from app.models.curated import starter_note
from app.models.hub import HubClient
from app.models.library import LibraryError, ModelRecord
from app.models.memory_fit import FitVerdict, SystemMemory, system_memory, verdict_for
from app.units import count, format_bytes
from app.workspace import Workspace
from ui.background import Background
from ui.models.export_dialog import ExportDialog
from ui.models.hub_view import HubView
from ui.models.library_model import LibraryTableModel, record_size, template_labels
from ui.notice_line import NoticeLine
from ui.untrusted import PlainLabel, ask


def _ask(parent: QWidget, title: str, text: str) -> bool:
    return ask(parent, title, text)  # the text names the model: shown literally


class ModelsTab(QWidget):
    chat_requested = Signal(str)
    """The person wants to chat with the named model."""
    library_changed = Signal()
    """A model was imported, downloaded or removed (the chat tab's picker may refresh)."""

    def __init__(self, workspace: Workspace, client: InferenceClient | None = None,
                 hub_client_factory: Callable[[], HubClient] = HubClient,
                 probe_system: Callable[[], SystemMemory] | None = None,
                 parent: QWidget | None = None,
                 unload_chat: Callable[[], object] | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.client = client
        # Frees the chat's model (the main window's chat); offered where Remove is refused.
        self.unload_chat = unload_chat
        self.probe_system = probe_system or self._probe_system
        self.system: SystemMemory | None = None
        self.background = Background(self)
        # Replaceable in tests: confirm(title, text) -> bool, open_url(QUrl) -> bool
        self.confirm: Callable[[str, str], bool] = lambda t, x: _ask(self, t, x)
        self.open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl
        self.model = LibraryTableModel(self)
        self.hub = HubView(workspace, hub_client_factory)
        self._build()
        self._connect()
        self.setAcceptDrops(True)
        self.refresh()
        self.refresh_system()

    # ------------------------------------------------------------- layout

    def _build(self) -> None:
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.import_button = QPushButton("Import GGUF…")
        self.remove_button = QPushButton("Remove")
        self.folder_button = QPushButton("Show in folder")
        self.chat_button = QPushButton("Chat with this model")
        self.chat_button.setDefault(True)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write this model for Ollama, llama.cpp, peft/vLLM/TGI "
                                      "or transformers")
        self.ctx_spin = QSpinBox()
        self.ctx_spin.setRange(256, 1 << 20)
        self.ctx_spin.setSingleStep(1024)
        self.ctx_spin.setValue(self.workspace.settings.load.n_ctx)
        self.ctx_spin.setSuffix(" tokens")
        self.ctx_spin.setToolTip("Context length used for the memory estimate")
        self.totals = PlainLabel()
        self.totals.setWordWrap(True)  # paths are long; never widen the whole window
        self.status = NoticeLine("Drop .gguf files here to import them.")
        self.starter_note = PlainLabel()
        self.starter_note.setWordWrap(True)
        self.starter_note.setObjectName("starterNote")

        buttons = QHBoxLayout()
        for b in (self.chat_button, self.import_button, self.remove_button,
                  self.folder_button, self.export_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Fit at context:"))
        buttons.addWidget(self.ctx_spin)
        installed = QWidget()
        layout = QVBoxLayout(installed)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.totals)
        layout.addWidget(self.starter_note)
        layout.addWidget(self.status)
        self.pages = QTabWidget()
        self.pages.addTab(installed, "Installed")
        self.pages.addTab(self.hub, "Discover on Hugging Face")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.pages)

    def _connect(self) -> None:
        self.import_button.clicked.connect(self._on_import_clicked)
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.folder_button.clicked.connect(self._on_folder_clicked)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.chat_button.clicked.connect(self._on_chat_clicked)
        self.table.doubleClicked.connect(self._on_chat_clicked)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.ctx_spin.valueChanged.connect(self._on_ctx_changed)
        self.hub.model_installed.connect(self._on_model_installed)
        self.hub.chat_requested.connect(self.chat_requested)
        self.hub.activity.connect(self._on_hub_activity)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.table,
                  self._on_remove_clicked)

    # -------------------------------------------------------------- state

    def refresh(self, select: str | None = None) -> None:
        """Re-read the library (after any change) and recompute the fit verdicts."""
        previous = select or (self.selected().name if self.selected() else None)
        records = self.workspace.library.list()
        self.model.set_records(records, self._verdicts(records))
        self.refresh_templates()
        total = sum(record_size(r) or 0 for r in records if r.managed)
        linked = sum(record_size(r) or 0 for r in records if not r.managed)
        where = self.workspace.home.models
        parts = [count(len(records), "model"),
                 f"{format_bytes(total)} in {where}" if total else f"nothing stored in {where}"]
        if linked:
            parts.append(f"{format_bytes(linked)} in files Hearth does not own")
        self.totals.setText(" · ".join(parts))
        starter = any(r.source == "starter" for r in records)
        self.starter_note.setText(starter_note() if starter else "")
        self.starter_note.setVisible(starter)
        if previous and (row := self.model.row_of(previous)) >= 0:
            self.table.selectRow(row)
        elif records:
            self.table.selectRow(0)
        self._on_selection_changed()

    def refresh_templates(self) -> None:
        """Name each model's chat template as the chat will pick it (reading a base's
        vocabulary for its family's markers, off the GUI thread)."""
        records, library = list(self.model.records), self.workspace.library
        settings = self.workspace.settings
        self.background.run(lambda: template_labels(records, library, settings.template_for),
                            self.model.set_templates,
                            lambda exc: logging.getLogger("hearth.ui").warning(
                                "naming the chat templates failed: %s", exc),
                            name="template-names")

    def refresh_system(self) -> None:
        """Measure free RAM / VRAM off the GUI thread (nvidia-smi can take a moment)."""
        self.background.run(self.probe_system, self._on_system, self._on_probe_failed,
                            name="memory-probe")

    def _on_probe_failed(self, exc: BaseException) -> None:
        # Not worth a dialog (the fit column just stays unknown), but never silent.
        logging.getLogger("hearth.ui").warning("measuring free memory failed: %s", exc)

    def _probe_system(self) -> SystemMemory:
        proc = self.client.proc if self.client is not None else None
        alive = proc is not None and proc.poll() is None
        return system_memory(worker_pid=proc.pid if alive and proc else None)

    def showEvent(self, event: QShowEvent) -> None:
        """Free memory changes while the app runs; re-measure whenever the tab is shown."""
        super().showEvent(event)
        if self.system is not None and not self.background.busy:
            self.refresh_system()
            self.refresh_templates()  # a template chosen in the chat since

    def _on_system(self, system: SystemMemory) -> None:
        self.system = system
        self.model.set_verdicts(self._verdicts(self.model.records))
        self.hub.set_system(system)

    def _verdicts(self, records: list[ModelRecord]) -> dict[str, FitVerdict]:
        if self.system is None:
            return {}
        load = self.workspace.settings.load
        return {r.name: verdict_for(r.info, self.ctx_spin.value(), load.n_gpu_layers,
                                    load.flash_attn, self.system, load.cache_type)
                for r in records}

    def selected(self) -> ModelRecord | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.record_at(rows[0].row()) if rows else None

    def select(self, name: str) -> None:
        row = self.model.row_of(name)
        if row >= 0:
            self.table.selectRow(row)

    def loaded_path(self) -> Path | None:
        loaded = self.client.loaded if self.client is not None else None
        return Path(loaded.path).resolve() if loaded is not None else None

    def say(self, text: str, error: bool = False, action: str = "",
            do: Callable[[], object] | None = None) -> None:
        """A note that fades, or an error that stays (with ``action``) until dismissed."""
        if error:
            self.status.fail(text, action, do)
        else:
            self.status.note(text)

    # -------------------------------------------------------------- slots

    def _on_selection_changed(self, *_: object) -> None:
        record = self.selected()
        for b in (self.remove_button, self.folder_button, self.chat_button,
                  self.export_button):
            b.setEnabled(record is not None)

    def _on_ctx_changed(self, value: int) -> None:
        self.model.set_verdicts(self._verdicts(self.model.records))
        self.hub.set_context(value)

    def _on_chat_clicked(self, *_: object) -> None:
        record = self.selected()
        if record is not None:
            self.chat_requested.emit(record.name)

    def _on_folder_clicked(self) -> None:
        record = self.selected()
        if record is not None:
            self.open_url(QUrl.fromLocalFile(str(record.path.parent)))

    def _on_export_clicked(self) -> None:
        record = self.selected()
        if record is not None:
            ExportDialog(self.workspace, record, self).open()

    def _on_remove_clicked(self) -> None:
        record = self.selected()
        if record is None:
            return
        if self.loaded_path() == record.path.resolve():
            self.say(f"{record.name} is loaded in the chat right now; unload it (or load "
                     "another model) first, then remove it.", error=True,
                     action="Unload from chat" if self.unload_chat else "",
                     do=lambda: self._on_unload(record.name))
            return
        if record.managed:
            text = (f"Remove {record.name} and delete its file "
                    f"({format_bytes(record_size(record), unknown='size unknown')})?")
        else:
            text = (f"Remove {record.name} from the library? Its file stays where it is:"
                    f"\n{record.path}")
        if not self.confirm("Remove model", text):
            return
        try:
            self.workspace.library.remove(record.name)
        except (LibraryError, OSError) as exc:
            self.say(f"Could not remove {record.name}: {exc}", error=True)
            return
        self.say(f"Removed {record.name}.")
        self.refresh()
        self.library_changed.emit()

    def _on_unload(self, name: str) -> None:
        if self.unload_chat is not None:
            self.unload_chat()
            self.say(f"Unloaded {name} from the chat; Remove can delete it now.")

    def _on_import_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import GGUF models", str(Path.home()),
                                                "GGUF models (*.gguf);;All files (*)")
        for path in paths:
            self.import_path(Path(path))

    def import_path(self, path: Path) -> None:
        """Validate and copy ``path`` into the library on a background thread."""
        self.say(f"Importing {path.name}…")
        self.import_button.setEnabled(False)
        self.background.run(lambda: self.workspace.library.import_file(path),
                            self._on_imported, self._on_import_failed, name="import")

    def _on_imported(self, record: ModelRecord) -> None:
        self.import_button.setEnabled(True)
        self.say(f"Imported {record.name}.")
        self.refresh(select=record.name)
        self.library_changed.emit()

    def _on_import_failed(self, exc: BaseException) -> None:
        self.import_button.setEnabled(True)
        text = str(exc) or type(exc).__name__
        self.say(text[:1].upper() + text[1:], error=True, action="Choose another file…",
                 do=self._on_import_clicked)

    def _on_hub_activity(self, summary: str) -> None:
        """Show running downloads on the hub page's tab, visible from the installed list."""
        title = "Discover on Hugging Face"
        self.pages.setTabText(1, f"{title} (downloading {summary})" if summary else title)

    def _on_model_installed(self, record: ModelRecord) -> None:
        self.refresh()
        self.library_changed.emit()

    # ------------------------------------------------------------ drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(u.toLocalFile().lower().endswith(".gguf") for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        ggufs = [p for p in paths if p.suffix.lower() == ".gguf"]
        if not ggufs:
            self.say("Only .gguf files can be imported.", error=True)
            return
        event.acceptProposedAction()
        for path in ggufs:
            self.import_path(path)

    def shutdown(self) -> None:
        """Stop background work: downloads pause (resumable), other threads are joined."""
        self.hub.shutdown()
        self.background.shutdown()
