"""The conversations list: new, search (titles and message text), rename, delete, export.

:class:`ConversationListModel` is a Qt list model over the store; the sidebar view only
renders it. Renaming is an in-place edit (double-click or F2) written straight back to
the store; deleting asks first, because it cannot be undone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    Qt,
    QTimer,
)
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.conversations import Conversation
from app.errors import HearthError
from ui.chat.chat_view_model import ChatViewModel
from ui.status_note import tell
from ui.untrusted import tooltip as safe_tooltip
from ui.untrusted import warn

Index = QModelIndex | QPersistentModelIndex
ID_ROLE = Qt.ItemDataRole.UserRole + 1


def when(iso: str) -> str:
    """'14:05' today, 'Mon 14:05' this week, else the date."""
    try:
        moment = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return ""
    now = datetime.now(UTC).astimezone()
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    if (now - moment).days < 7:
        return moment.strftime("%a %H:%M")
    return moment.strftime("%Y-%m-%d")


class ConversationListModel(QAbstractListModel):
    def __init__(self, chat: ChatViewModel) -> None:
        super().__init__()
        self.chat = chat
        self.search = ""
        self.rows: list[Conversation] = []
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        self.rows = self.chat.store.list(search=self.search or None)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        conversation = self.rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return conversation.title
        if role == Qt.ItemDataRole.ToolTipRole:
            model = f" · {conversation.model}" if conversation.model else ""
            return safe_tooltip(f"{conversation.title}\n{when(conversation.updated_at)}{model}")
        if role == ID_ROLE:
            return conversation.id
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        return super().flags(index) | Qt.ItemFlag.ItemIsEditable

    def setData(self, index: Index, value: Any,
                role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not str(value).strip():
            return False
        self.chat.rename(self.rows[index.row()].id, str(value))
        return True

    def row_of(self, conversation_id: int | None) -> int:
        return next((i for i, c in enumerate(self.rows) if c.id == conversation_id), -1)


class Sidebar(QFrame):
    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chat = chat
        self.setObjectName("sidebar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.model = ConversationListModel(chat)
        self.new_button = QPushButton("+  New chat")
        self.new_button.setObjectName("newChat")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.list = QListView()
        self.list.setObjectName("conversationList")
        self.list.setModel(self.model)
        self.list.setFrameShape(QFrame.Shape.NoFrame)
        self.list.setUniformItemSizes(True)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                  | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(8)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)

        self._search_timer = QTimer(self, singleShot=True, interval=150)
        self._search_timer.timeout.connect(self._on_search)
        self.search.textChanged.connect(self._search_timer.start)
        self.new_button.clicked.connect(self._on_new)
        self.list.selectionModel().currentChanged.connect(self._on_current_changed)
        self.list.customContextMenuRequested.connect(self._on_context_menu)
        self.list.installEventFilter(self)
        chat.conversations_changed.connect(self._on_conversations_changed)
        chat.conversation_opened.connect(self._select_open)
        self._select_open()

    # ------------------------------------------------------------------ slots

    def _on_new(self) -> None:
        self.search.clear()
        self.chat.new_conversation()

    def _on_search(self) -> None:
        self.model.search = self.search.text().strip()
        self._on_conversations_changed()

    def _on_conversations_changed(self) -> None:
        self.model.refresh()
        self._select_open()

    def _select_open(self, *_args: object) -> None:
        row = self.model.row_of(self.chat.conversation_id)
        selection = self.list.selectionModel()
        blocked = selection.blockSignals(True)
        if row >= 0:
            index = self.model.index(row)
            selection.setCurrentIndex(index, selection.SelectionFlag.ClearAndSelect)
            self.list.scrollTo(index)
        else:
            selection.clearSelection()
        selection.blockSignals(blocked)

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.chat.open_conversation(current.data(ID_ROLE))

    def _on_context_menu(self, pos: QPoint) -> None:
        index = self.list.indexAt(pos)
        if not index.isValid():
            return
        conversation_id = index.data(ID_ROLE)
        menu = QMenu(self)
        rename = QAction("Rename", menu)
        rename.triggered.connect(lambda: self.list.edit(index))
        export_md = QAction("Export as Markdown…", menu)
        export_md.triggered.connect(lambda: self.export(conversation_id, "md"))
        export_json = QAction("Export as JSON (OpenAI messages)…", menu)
        export_json.triggered.connect(lambda: self.export(conversation_id, "json"))
        delete = QAction("Delete…", menu)
        delete.triggered.connect(lambda: self.confirm_delete(conversation_id))
        for action in (rename, export_md, export_json):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(delete)
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def rename_open(self) -> None:
        """Start editing the open conversation's title in place (menu, F2)."""
        row = self.model.row_of(self.chat.conversation_id)
        if row < 0:  # filtered out by a search: show it again first
            self.search.clear()
            self._on_search()
            row = self.model.row_of(self.chat.conversation_id)
        if row >= 0:
            self.list.setFocus()
            self.list.edit(self.model.index(row))

    def confirm_delete(self, conversation_id: int) -> bool:
        title = self.chat.store.get(conversation_id).title
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete conversation",
                          f"Delete “{title}”?", parent=self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setInformativeText("Its messages are removed for good.")
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(box.addButton(QMessageBox.StandardButton.Cancel))
        box.exec()
        if box.clickedButton() is not delete:
            return False
        self.chat.delete(conversation_id)
        return True

    def export(self, conversation_id: int, kind: str) -> None:
        title = self.chat.store.get(conversation_id).title
        safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in title).strip()
        label = "Markdown (*.md)" if kind == "md" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation",
                                              f"{safe or 'conversation'}.{kind}", label)
        if not path:
            return
        if not path.lower().endswith(f".{kind}"):
            path += f".{kind}"
        try:
            written = self.chat.export(conversation_id, path)
        except (OSError, HearthError) as exc:
            warn(self, "Export failed", f"Could not write {path}: {exc}")
            return
        tell(self, f"Exported “{title}” to {written}")

    def eventFilter(self, watched: object, event: object) -> bool:
        from PySide6.QtCore import QEvent
        from PySide6.QtGui import QKeyEvent

        if (watched is self.list and isinstance(event, QKeyEvent)
                and event.type() == QEvent.Type.KeyPress
                and event.key() == Qt.Key.Key_Delete and self.list.currentIndex().isValid()):
            self.confirm_delete(self.list.currentIndex().data(ID_ROLE))
            return True
        return super().eventFilter(watched, event)  # type: ignore[arg-type]
