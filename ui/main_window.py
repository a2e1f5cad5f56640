"""The main window: one tab per room of the house (Chat, Models, Fine-tune).

It owns the inference bridge (one worker for the whole window) and hands the workspace
and the bridge to each tab; the tabs never reach for globals.
"""

from __future__ import annotations

from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import protocol as p
from app.chat import ChatSession
from app.corrections import CorrectionStore
from app.workspace import Workspace
from ui.corrections_view import CorrectionsView
from ui.finetune_tab import FineTuneTab
from ui.inference_bridge import InferenceBridge
from ui.models_tab import ModelsTab


class MainWindow(QMainWindow):
    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        self.bridge = InferenceBridge(log_file=workspace.home.logs / "inference-worker.log",
                                      parent=self)
        self.session = ChatSession(workspace.store, self.bridge.client)
        self.setWindowTitle("Hearth")
        self.resize(1100, 760)
        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)
        self.tabs.addTab(self._build_chat(), "Chat")
        self.models_tab = ModelsTab(workspace, self.bridge.client)
        self.tabs.addTab(self.models_tab, "Models")
        self.models_tab.chat_requested.connect(self._on_chat_requested)
        self._add_finetune_tabs()
        self.bridge.event.connect(self._on_event)
        self.statusBar().showMessage("Starting the model worker…")

    def _build_chat(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        top = QHBoxLayout()
        self.model_picker = QComboBox()
        for record in self.workspace.library.list():
            self.model_picker.addItem(record.name, record)
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self._on_load_clicked)
        self.model_state = QLabel("not loaded")
        top.addWidget(QLabel("Model:"))
        top.addWidget(self.model_picker, 1)
        top.addWidget(self.load_button)
        top.addWidget(self.model_state)
        layout.addLayout(top)
        self.transcript = QPlainTextEdit(readOnly=True)
        layout.addWidget(self.transcript, 1)
        bottom = QHBoxLayout()
        self.composer = QPlainTextEdit()
        self.composer.setPlaceholderText("Type a message…")
        self.composer.setMaximumHeight(90)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self._on_send_clicked)
        bottom.addWidget(self.composer, 1)
        bottom.addWidget(self.send_button)
        layout.addLayout(bottom)
        self.conversation_id: int | None = None
        return page

    def start(self) -> None:
        """Start the worker and load the default model, without blocking the window."""
        try:
            self.bridge.client.start()
        except Exception as exc:  # noqa: BLE001 - shown to the person, never a traceback
            self.statusBar().showMessage(f"The model worker did not start: {exc}")
            return
        if self.model_picker.count():
            self._on_load_clicked()
        else:
            self.statusBar().showMessage("No model installed yet.")

    def _on_load_clicked(self) -> None:
        record = self.model_picker.currentData()
        if record is None:
            return
        load = self.workspace.settings.load
        self.model_state.setText("loading…")
        self.bridge.client.load(record.path, n_ctx=load.n_ctx, n_gpu_layers=load.n_gpu_layers,
                                n_threads=load.n_threads, flash_attn=load.flash_attn)

    def _on_send_clicked(self) -> None:
        text = self.composer.toPlainText().strip()
        if not text or self.bridge.client.loaded is None:
            return
        if self.conversation_id is None:
            record = self.model_picker.currentData()
            self.conversation_id = self.workspace.store.create(
                title=text[:60], model=record.name if record else None).id
        self.composer.clear()
        self.transcript.appendPlainText(f"You: {text}\n\nAssistant: ")
        self.session.send(self.conversation_id, text)

    def _on_event(self, event: object) -> None:
        if isinstance(event, p.LoadProgress):
            self.model_state.setText(f"loading {event.fraction:.0%}")
        elif isinstance(event, p.Loaded):
            self.model_state.setText("ready")
            self.statusBar().showMessage(f"Model loaded in {event.load_seconds:.1f} s "
                                         f"(context {event.n_ctx} tokens)")
        elif isinstance(event, p.Tokens):
            cursor = self.transcript.textCursor()
            cursor.movePosition(cursor.MoveOperation.End)
            cursor.insertText(event.text)
        elif isinstance(event, p.Error | p.WorkerDied):
            self.model_state.setText("error")
            self.statusBar().showMessage(event.message)
        finished = self.session.handle(event)
        if finished is not None:
            self.transcript.appendPlainText("")

    def _on_chat_requested(self, name: str) -> None:
        """'Chat with this model' from the Models tab: pick it in the Chat tab and load it."""
        self.model_picker.clear()
        for record in self.workspace.library.list():
            self.model_picker.addItem(record.name, record)
        self.model_picker.setCurrentIndex(max(0, self.model_picker.findText(name)))
        self.tabs.setCurrentIndex(0)
        self._on_load_clicked()

    # ------------------------------------------------------------ fine-tuning

    def _add_finetune_tabs(self) -> None:
        """The Fine-tune tab and the Datasets tab (corrections collected from chats)."""
        self.corrections = CorrectionStore(self.workspace.library.conn)
        self.finetune_tab = FineTuneTab(self.workspace, self.corrections,
                                        unload_chat=self._on_unload_chat,
                                        reload_chat=self._on_reload_chat)
        self.tabs.addTab(self.finetune_tab, "Fine-tune")
        self.corrections_view = CorrectionsView(self.corrections)
        self.tabs.addTab(self.corrections_view, "Datasets")
        self.corrections_view.changed.connect(self.finetune_tab.refresh_corrections)
        self.finetune_tab.chat_requested.connect(self._on_chat_requested)
        self.finetune_tab.run_ended.connect(self._on_finetune_ended)
        self.models_tab.library_changed.connect(self.finetune_tab.refresh_models)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self._unloaded_for_training: str | None = None

    def _on_tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.finetune_tab and not self.finetune_tab.is_training():
            # By default, fine-tune the model of the current chat.
            name = self.model_picker.currentText()
            if name and name != getattr(self, "_finetune_synced", None):
                self._finetune_synced = name
                self.finetune_tab.set_model(name)

    def _on_unload_chat(self) -> None:
        loaded = self.bridge.client.loaded
        self._unloaded_for_training = loaded.path if loaded else None
        if loaded is not None:
            self.bridge.client.unload()
            self.model_state.setText("unloaded for training")

    def _on_reload_chat(self) -> None:
        if self._unloaded_for_training is not None:
            self._unloaded_for_training = None
            self._on_load_clicked()

    def _on_finetune_ended(self, _run_id: str, status: str) -> None:
        if status == "finished":
            self.models_tab.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self.finetune_tab.shutdown()
        self.models_tab.shutdown()
        self.bridge.shutdown()
        super().closeEvent(event)


