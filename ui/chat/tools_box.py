"""Tools in the chat's settings: which added MCP servers this conversation may call.

Switched on per conversation, as a person expects ("this chat may look up the time"),
and kept in the conversation's settings (:class:`app.tools.chat_settings.ToolSettings`):
the servers, how many calls in a row before the model must answer, and whether each
turn starts with a call (the small starter model rarely calls by itself). The servers
themselves are added in Settings > Tools (:class:`~ui.tools_dialog.ToolsDialog`), which
"MCP servers…" opens.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.tools.chat_settings import MAX_ROUNDS, ToolSettings
from ui.chat.chat_view_model import ChatViewModel
from ui.tools_dialog import ToolsDialog
from ui.untrusted import PlainLabel


class ToolsBox(QGroupBox):
    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__("Tools", parent)
        self.chat = chat
        self.dialog: ToolsDialog | None = None
        self.checks: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)
        self.empty = PlainLabel("No MCP servers yet. Add one to let the model call its "
                                "tools; each call is asked about first.")
        self.empty.setWordWrap(True)
        self.empty.setObjectName("statsLabel")
        layout.addWidget(self.empty)
        self.server_rows = QVBoxLayout()
        self.server_rows.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.server_rows)
        form = QFormLayout()
        self.max_rounds = QSpinBox()
        self.max_rounds.setRange(1, MAX_ROUNDS)
        self.max_rounds.setToolTip("Tool calls in a row before the model must answer")
        self.max_rounds.setKeyboardTracking(False)
        form.addRow("Calls in a row", self.max_rounds)
        layout.addLayout(form)
        self.required = QCheckBox("Start each turn with a tool call")
        self.required.setToolTip("The model's first reply to each message is a call to "
                                 "one of the tools (small models rarely call otherwise)")
        layout.addWidget(self.required)
        self.status = PlainLabel()
        self.status.setWordWrap(True)
        self.status.setObjectName("statsLabel")
        layout.addWidget(self.status)
        self.manage = QPushButton("MCP servers…")
        self.manage.setToolTip("Add or remove MCP servers and see their tools")
        self.manage.clicked.connect(self.manage_servers)
        layout.addWidget(self.manage)
        self.max_rounds.valueChanged.connect(self._on_edited)
        self.required.toggled.connect(self._on_edited)
        chat.conversation_opened.connect(self._show)
        chat.tools.state_changed.connect(self._show_status)
        self._show()

    def _show(self, *_args: object) -> None:
        """The open conversation's tool settings, with the servers added now."""
        settings = self.chat.tools.settings_of(self.chat.conversation_id)
        entries = self.chat.tools.servers.entries()
        names = [e.name for e in entries]
        for name in [n for n in self.checks if n not in names]:
            box = self.checks.pop(name)
            box.setParent(None)
            box.deleteLater()
        for entry in entries:
            box = self.checks.get(entry.name)
            if box is None:
                box = QCheckBox(entry.name)
                box.setToolTip(entry.url or entry.command)
                box.toggled.connect(self._on_edited)
                self.checks[entry.name] = box
                self.server_rows.addWidget(box)
            blocked = box.blockSignals(True)
            box.setChecked(entry.name in settings.servers)
            box.blockSignals(blocked)
        for widget, set_value in ((self.max_rounds, lambda: self.max_rounds.setValue(
                settings.max_rounds)), (self.required, lambda: self.required.setChecked(
                    settings.required))):
            blocked = widget.blockSignals(True)
            set_value()
            widget.blockSignals(blocked)
        self.empty.setVisible(not entries)
        self._show_status()

    def _show_status(self) -> None:
        cid = self.chat.conversation_id
        self.status.setText(self.chat.tools.status(cid) if self.checks else "")
        self.status.setVisible(bool(self.status.text()))

    def _on_edited(self, *_args: object) -> None:
        servers = tuple(name for name, box in self.checks.items() if box.isChecked())
        settings = ToolSettings(servers, self.max_rounds.value(), self.required.isChecked())
        cid = self.chat.conversation_id
        if cid is None:  # none open yet: these settings start one, as a message would
            cid = self.chat.new_conversation()
        self.chat.tools.set_settings(cid, settings)
        self._show()

    def manage_servers(self) -> ToolsDialog:
        """Open Settings > Tools (one dialog, kept while the window lives)."""
        if self.dialog is None:
            self.dialog = ToolsDialog(self.chat.workspace, self.window())
            self.dialog.servers_changed.connect(self._show)
        self.dialog.refresh()
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    def shutdown(self) -> None:
        if self.dialog is not None:
            self.dialog.shutdown()
