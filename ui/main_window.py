"""The main window: one tab per room of the house (Chat, Models, Fine-tune).

It owns the inference bridge (one worker for the whole window) and the chat model, hands
them to the tabs (which never reach for globals), and keeps what a person expects to
find again — window geometry, splitter sizes, the open conversation — in
``settings.ui``.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QMainWindow, QTabWidget

from app.workspace import Workspace
from ui.chat.chat_model import ChatModel
from ui.chat.chat_page import ChatPage
from ui.inference_bridge import InferenceBridge
from ui.models_tab import ModelsTab
from ui.pyside_refcount import guard

# Whoever builds a window (the app, a test, a benchmark) gets the guard against
# PySide6 6.12.0's reference leak on CPython 3.11; it is idempotent.
guard()


class MainWindow(QMainWindow):
    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        self.bridge = InferenceBridge(log_file=workspace.home.logs / "inference-worker.log",
                                      parent=self)
        self.chat = ChatModel(workspace, self.bridge, parent=self)
        self.session = self.chat.session
        self.setWindowTitle("Hearth")
        self.resize(1280, 820)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)
        self.chat_page = ChatPage(self.chat)
        self.tabs.addTab(self.chat_page, "Chat")
        self.models_tab = ModelsTab(workspace, self.bridge.client)
        self.tabs.addTab(self.models_tab, "Models")
        self.models_tab.chat_requested.connect(self.chat_with_model)
        self.models_tab.library_changed.connect(self.chat_page.model_bar.refresh_models)
        self._shortcuts()
        self._restore()
        self._closed = False

    # ----------------------------------------------------------------- public

    def start(self) -> None:
        """Start the worker and load the default model, without blocking the window."""
        self.chat.start()

    def chat_with_model(self, name: str) -> None:
        """Switch to Chat with ``name`` loaded and a fresh conversation (Models tab asks)."""
        self.tabs.setCurrentWidget(self.chat_page)
        self.chat_page.model_bar.refresh_models()
        if name != self.chat.model_name or self.chat.state not in ("ready", "loading"):
            self.chat.load_model(name)
        self.chat.new_conversation()
        self.chat_page.composer.focus()

    # -------------------------------------------------------------- internals

    def _shortcuts(self) -> None:
        for keys, slot in (("Ctrl+N", self._on_new_chat), ("Ctrl+L", self._on_focus_composer),
                           ("Esc", self._on_stop)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)

    def _on_new_chat(self) -> None:
        self.tabs.setCurrentWidget(self.chat_page)
        self.chat.new_conversation()
        self.chat_page.composer.focus()

    def _on_focus_composer(self) -> None:
        self.tabs.setCurrentWidget(self.chat_page)
        self.chat_page.composer.focus()

    def _on_stop(self) -> None:
        self.chat.stop()

    def _restore(self) -> None:
        ui = self.workspace.settings.ui
        # The panel first: it changes the window's minimum width, which geometry respects.
        self.chat_page.model_bar.settings_button.setChecked(
            bool(ui.get("settings_panel", True)))
        geometry = ui.get("geometry")
        if isinstance(geometry, str):
            self.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))
        sizes = ui.get("chat_splitter")
        if isinstance(sizes, list) and len(sizes) == 3 and all(isinstance(s, int)
                                                               for s in sizes):
            self.chat_page.splitter.setSizes(sizes)
        conversation = ui.get("conversation")
        if isinstance(conversation, int):
            self.chat.open_conversation(conversation)
        if self.chat.conversation_id is None:
            recent = self.workspace.store.list()
            if recent:
                self.chat.open_conversation(recent[0].id)

    def save_ui_state(self) -> None:
        self.chat_page.settings_panel.flush()
        ui = self.workspace.settings.ui
        ui["geometry"] = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        ui["chat_splitter"] = self.chat_page.splitter.sizes()
        ui["settings_panel"] = self.chat_page.model_bar.settings_button.isChecked()
        ui["conversation"] = self.chat.conversation_id
        self.workspace.save_settings()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if not self._closed:
            self._closed = True
            self.save_ui_state()
            self.models_tab.shutdown()
            self.chat.shutdown()
            self.chat_page.view.shutdown()
        super().closeEvent(event)
