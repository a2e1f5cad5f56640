"""The main window: one tab per room of the house (Chat, Models, Fine-tune).

It owns the inference bridge (one worker for the whole window) and the chat model, hands
them to the tabs (which never reach for globals), and keeps what a person expects to
find again — window geometry, splitter sizes, the open conversation — in
``settings.ui`` (:class:`app.settings.WindowState`).
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QMainWindow, QPushButton, QScrollArea, QTabWidget

from app.chat.corrections import CorrectionStore
from app.chat.tools import Tool, ToolCall
from app.models.versions import ActiveVersions
from app.workspace import Workspace
from ui import theme
from ui.chat.chat_page import ChatPage
from ui.chat.chat_view_model import ChatViewModel
from ui.chat.inference_bridge import InferenceBridge
from ui.datasets.datasets_view import CorrectReplyDialog, DatasetsView
from ui.docs.docs_room import DocumentsRoom
from ui.doctor_dialog import DoctorDialog
from ui.finetune.finetune_tab import FineTuneTab
from ui.menu_bar import MenuBar
from ui.models.models_tab import ModelsTab
from ui.server_panel import ServerButton
from ui.teach.teach_panel import TeachPanel

TEACH_TIP = "Teach the chat model the corrections you made"


class MainWindow(QMainWindow):
    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        self.bridge = InferenceBridge(log_file=workspace.home.logs / "inference-worker.log",
                                      parent=self, home=workspace.home)
        self.chat = ChatViewModel(workspace, self.bridge, parent=self)
        self.session = self.chat.session
        self.setWindowTitle("Hearth")
        self.resize(1280, 820)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)
        self.chat_page = ChatPage(self.chat)
        self.tabs.addTab(self.chat_page, "Chat")
        self.models_tab = ModelsTab(workspace, self.bridge.client, unload_chat=self.chat.unload)
        self.tabs.addTab(self.models_tab, "Models")
        self.models_tab.chat_requested.connect(self.chat_with_model)
        self.models_tab.library_changed.connect(self.chat_page.model_bar.refresh_models)
        self._add_finetune_tabs()
        self.documents_room = DocumentsRoom(self.chat.docs.shelf, workspace,
                                            lambda: self.chat.model_name)
        self.tabs.addTab(self.documents_room, "Documents")
        self.documents_room.changed.connect(self.chat_page.settings_panel.documents_box.refresh)
        if self.documents_room.teach is not None:  # drafted questions are corrections
            self.documents_room.teach.drafted.connect(lambda _: self.datasets_view.refresh())
        self.server_button = ServerButton(workspace, self.chat, parent=self)
        self.statusBar().addPermanentWidget(self.server_button)
        self._menus()
        self._style = theme.apply_style(self)  # tab descenders, dark-theme radios
        self._shortcuts()
        self._restore()
        self._closed = False

    # ----------------------------------------------------------------- public

    def start(self) -> None:
        """Start the worker and load the default model, without blocking the window."""
        self.chat.start()

    def chat_with_model(self, name: str) -> None:
        """Switch to Chat with ``name`` loaded and a fresh conversation (Models tab asks);
        a base answers with its active taught version, as when picked in the chat."""
        self.tabs.setCurrentWidget(self.chat_page)
        self.chat_page.model_bar.refresh_models()
        self.chat.choose_model(name)
        self.chat.new_conversation()
        self.chat_page.composer.focus()

    # -------------------------------------------------------------- internals

    def _menus(self) -> None:
        self.doctor_dialog: DoctorDialog | None = None
        self.menus = MenuBar(self)
        self.system_check_action = self.menus.system_check

    def show_system_check(self) -> DoctorDialog:
        if self.doctor_dialog is None:
            self.doctor_dialog = DoctorDialog(self.workspace.home, parent=self)
        self.doctor_dialog.show()
        self.doctor_dialog.raise_()
        if self.doctor_dialog.again.isEnabled():
            self.doctor_dialog.start()
        return self.doctor_dialog

    def _shortcuts(self) -> None:
        for keys, slot in (("Ctrl+L", self._on_focus_composer), ("Esc", self._on_stop)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)

    def new_chat(self) -> None:
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
        self.chat_page.model_bar.settings_button.setChecked(ui.settings_panel)
        if ui.geometry is not None:
            self.restoreGeometry(QByteArray.fromBase64(ui.geometry.encode("ascii")))
        if ui.chat_splitter is not None and len(ui.chat_splitter) == 3:
            self.chat_page.splitter.setSizes(ui.chat_splitter)
        if ui.conversation is not None:
            self.chat.open_conversation(ui.conversation)
        if self.chat.conversation_id is None:
            recent = self.workspace.store.list()
            if recent:
                self.chat.open_conversation(recent[0].id)

    def save_ui_state(self) -> None:
        self.chat_page.settings_panel.flush()
        ui = self.workspace.settings.ui
        ui.geometry = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        ui.chat_splitter = self.chat_page.splitter.sizes()
        ui.settings_panel = self.chat_page.model_bar.settings_button.isChecked()
        ui.conversation = self.chat.conversation_id
        self.workspace.save_settings()

    # ------------------------------------------------------------ fine-tuning

    def _add_finetune_tabs(self) -> None:
        """The Fine-tune tab and the Datasets tab (corrections collected from chats)."""
        self.corrections = CorrectionStore(self.workspace.library.conn)
        self.finetune_tab = FineTuneTab(self.workspace, self.corrections,
                                        unload_chat=self._on_unload_chat,
                                        reload_chat=self._on_reload_chat)
        self.tabs.addTab(self.finetune_tab, "Fine-tune")
        self.datasets_view = DatasetsView(self.corrections)
        self.tabs.addTab(self.datasets_view, "Datasets")
        self.datasets_view.changed.connect(self.finetune_tab.refresh_corrections)
        # Teach: under the corrections, and one button in the status bar, seen from chat.
        self.teach_panel = TeachPanel(self.workspace, self.corrections)
        # Scrolls rather than growing the window's minimum height (every tab counts).
        teach_scroll = QScrollArea()
        teach_scroll.setWidgetResizable(True)
        teach_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        teach_scroll.setWidget(self.teach_panel)
        self.datasets_view.layout().addWidget(teach_scroll)
        self.teach_scroll = teach_scroll
        self.teach_button = QPushButton("Teach")
        self.teach_button.setToolTip(TEACH_TIP)
        self.teach_button.clicked.connect(self._on_teach_clicked)
        self.statusBar().addPermanentWidget(self.teach_button)
        self._teach_synced: str | None = self.chat.model_name
        self.teach_panel.state_changed.connect(self._update_teach_button)
        self.teach_panel.set_base(self.chat.model_name)
        self.teach_panel.active_changed.connect(self._on_teach_active_changed)
        self.teach_panel.ended.connect(self._on_teach_ended)
        self.teach_panel.corrections_changed.connect(self.datasets_view.refresh)
        self.teach_panel.merged.connect(lambda _name: self.models_tab.refresh())
        self.datasets_view.changed.connect(lambda _n: self.teach_panel.set_base(
            self.teach_panel.base or self.chat.model_name))
        self.chat.model_state_changed.connect(self._on_chat_model_changed)
        self.chat.versions_changed.connect(lambda *_: self.teach_panel.refresh())
        self.finetune_tab.chat_requested.connect(self.chat_with_model)
        self.finetune_tab.run_ended.connect(self._on_finetune_ended)
        self.models_tab.library_changed.connect(self.finetune_tab.refresh_models)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.chat_page.view.correct_requested.connect(self._on_correct_requested)
        self._unloaded_for_training: str | None = None
        self._finetune_synced: str | None = None

    def _on_correct_requested(self, message_id: int, text: str) -> None:
        """Teach from chat: the person rewrites a reply; it becomes a training example.
        A reply that called tools is corrected among the tools its conversation offers
        (its servers are started first when they are not running)."""
        message = self.workspace.store.message(message_id)
        calls = [step.call for step in message.tool_steps]
        if not calls:
            self._correct(message_id, text, [], [])
            return
        self.chat.tools.offered_tools(
            message.conversation_id,
            lambda tools: self._correct(message_id, text, calls, tools))

    def _correct(self, message_id: int, text: str, calls: list[ToolCall],
                 tools: list[Tool]) -> None:
        dialog = CorrectReplyDialog(self.corrections, self.workspace.store, message_id, text,
                                    parent=self, calls=calls, tools=tools)
        if dialog.exec() == CorrectReplyDialog.DialogCode.Accepted:
            self.datasets_view.refresh()
            n = self.corrections.count()
            self.statusBar().showMessage(
                f"Saved as a training example ({n} collected): press Teach to learn them.",
                8000)

    def _on_teach_clicked(self) -> None:
        """From the chat: teach its model, watched in the Datasets tab. While a run is
        going (or after a refusal), the click only shows the panel."""
        self.tabs.setCurrentWidget(self.datasets_view)
        self.teach_scroll.ensureWidgetVisible(self.teach_panel.teach_button)
        if not self.teach_panel.is_running():
            self.teach_panel.set_base(self.chat.model_name)
            self.teach_panel.start()

    def _update_teach_button(self) -> None:
        """The status-bar button says what Teach is doing, or what to do instead."""
        panel = self.teach_panel
        if panel.is_running():
            text = panel.status_text()
            tip = f"Teaching {panel.base}: click to watch it (and cancel it) in Datasets"
        else:
            blocked = panel.blocked_reason(self.chat.model_name) \
                if self.chat.model_name else None
            text = "Teach: change the corrections first" if blocked else "Teach"
            tip = blocked or TEACH_TIP
        self.teach_button.setText(text)
        self.teach_button.setToolTip(tip)

    def _on_teach_ended(self, sentence: str) -> None:
        """Passed, refused, cancelled or failed: one sentence, seen from any tab."""
        self.statusBar().showMessage(sentence, 20000)

    def _on_chat_model_changed(self) -> None:
        """Another model in the chat: the panel teaches (and lists the versions of) its
        base, unless a run or a result awaiting Accept holds the panel."""
        name = self.chat.model_name
        if name == self._teach_synced:
            return
        self._teach_synced = name
        if name and not self.teach_panel.is_running() and self.teach_panel.summary is None:
            self.teach_panel.set_base(name)  # its state_changed updates the button
        else:
            self._update_teach_button()

    def _on_teach_active_changed(self, base: str, name: str) -> None:
        """Accept or roll back: the chat of that base answers with ``name`` from now on."""
        self.models_tab.refresh()
        self.chat_page.model_bar.refresh_models()
        current = self.chat.model_name
        if current in (base, name) or (current and ActiveVersions(
                self.workspace.home).base_of(current) == base):
            self.chat.load_model(name)

    def _on_tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.finetune_tab and not self.finetune_tab.is_training():
            # By default, fine-tune the model of the current chat.
            name = self.chat.model_name
            if name and name != self._finetune_synced:
                self._finetune_synced = name
                self.finetune_tab.set_model(name)

    def _on_unload_chat(self) -> None:
        """Memory is short for a fine-tune: free the chat model until it ends."""
        if self.chat.loaded is None:
            return
        self._unloaded_for_training = self.chat.model_name
        self.chat.unload()

    def _on_reload_chat(self) -> None:
        """A fine-tune ended (or did not start): load again what it unloaded, if anything;
        this window is the one that knows (the Fine-tune tab calls it at every end)."""
        name, self._unloaded_for_training = self._unloaded_for_training, None
        if name is not None:
            self.chat.load_model(name)

    def _on_finetune_ended(self, _run_id: str, status: str) -> None:
        if status == "finished":
            self.models_tab.refresh()
            self.chat_page.model_bar.refresh_models()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed:
            self._closed = True
            self.save_ui_state()
            self.finetune_tab.shutdown()
            self.teach_panel.shutdown()
            self.models_tab.shutdown()
            self.documents_room.shutdown()
            self.menus.importer.shutdown()
            self.server_button.shutdown()
            self.chat.shutdown()
            self.chat_page.settings_panel.tools_box.shutdown()
            self.chat_page.view.shutdown()
            if self.doctor_dialog is not None:
                self.doctor_dialog.background.shutdown()
        super().closeEvent(event)
