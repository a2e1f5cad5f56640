"""The main window's menu bar: every action a person can take, findable by reading.

Rename, export and delete were reachable only by right-clicking a conversation, and
there was no Quit. The menus name each action with its shortcut; the actions run the
same code as the buttons and context menus (the sidebar's, the chat model's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence

from ui.chat.import_flow import ConversationImporter

if TYPE_CHECKING:
    from ui.main_window import MainWindow


class MenuBar:
    """Builds the menus of ``window`` and keeps them enabled only when they can act."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        bar = window.menuBar()
        file_menu = bar.addMenu("&File")
        self.new_chat = self._add(file_menu, "&New chat", window.new_chat, "Ctrl+N")
        self.importer = ConversationImporter(window.chat, window)
        self.import_chats = self._add(file_menu, "&Import conversations…",
                                      self.importer.choose, "Ctrl+O")
        self.import_chats.setToolTip("OpenAI or ShareGPT JSONL, ChatGPT's conversations."
                                     "json, Open WebUI's export, or Hearth's own JSON")
        file_menu.addSeparator()
        self.export_md = self._add(file_menu, "Export conversation as &Markdown…",
                                   lambda: self._export("md"))
        self.export_json = self._add(file_menu, "Export conversation as &JSON…",
                                     lambda: self._export("json"))
        file_menu.addSeparator()
        self.quit = self._add(file_menu, "&Quit", window.close, QKeySequence.StandardKey.Quit)
        self.quit.setShortcut("Ctrl+Q")  # the same on every platform, as the issue asks
        chat_menu = bar.addMenu("&Conversation")
        self.rename = self._add(chat_menu, "&Rename…", self._rename, "F2")
        self.regenerate = self._add(chat_menu, "Re&generate reply", window.chat.regenerate,
                                    "Ctrl+R")
        self.stop = self._add(chat_menu, "&Stop reply", window.chat.stop)
        self.stop.setToolTip("Stop the reply being written (Esc)")
        chat_menu.addSeparator()
        self.delete = self._add(chat_menu, "&Delete…", self._delete)
        settings_menu = bar.addMenu("&Settings")
        self.tools = self._add(settings_menu, "&Tools (MCP servers)…", self._tools)
        self.tools.setToolTip("Add MCP servers and see their tools; switch them on per "
                              "conversation in the chat's settings")
        help_menu = bar.addMenu("&Help")
        self.system_check = self._add(help_menu, "System check…", window.show_system_check)
        self.system_check.setToolTip("What this machine offers Hearth, with a short "
                                     "self-test (the same as 'hearth doctor')")
        chat = window.chat
        for signal in (chat.conversation_opened, chat.messages_changed, chat.reply_started,
                       chat.reply_finished, chat.model_state_changed):
            signal.connect(self._update)
        self._update()

    def _add(self, menu: object, text: str, slot: Callable[[], object],
             keys: str | QKeySequence.StandardKey | None = None) -> QAction:
        action = QAction(text, self.window)
        if keys is not None:
            action.setShortcut(keys)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)  # type: ignore[attr-defined]
        return action

    def _update(self, *_args: object) -> None:
        chat = self.window.chat
        has = chat.conversation_id is not None
        for action in (self.export_md, self.export_json, self.rename, self.delete):
            action.setEnabled(has)
        self.regenerate.setEnabled(has and chat.can_send and bool(chat.messages()))
        self.stop.setEnabled(chat.reply is not None)

    # ---------------------------------------------------------------- actions

    def _export(self, kind: str) -> None:
        if self.window.chat.conversation_id is not None:
            self.window.chat_page.sidebar.export(self.window.chat.conversation_id, kind)

    def _rename(self) -> None:
        self.window.tabs.setCurrentWidget(self.window.chat_page)
        self.window.chat_page.sidebar.rename_open()

    def _tools(self) -> None:
        self.window.chat_page.settings_panel.tools_box.manage_servers()

    def _delete(self) -> None:
        if self.window.chat.conversation_id is not None:
            self.window.chat_page.sidebar.confirm_delete(self.window.chat.conversation_id)
