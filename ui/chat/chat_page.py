"""The Chat tab: conversations on the left, the conversation in the middle, settings on
the right, all views of one :class:`~ui.chat.chat_view_model.ChatViewModel`."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QSplitter, QVBoxLayout, QWidget

from ui import theme
from ui.chat.chat_view_model import ChatViewModel
from ui.chat.composer import Composer
from ui.chat.conversation_view import COLUMN_WIDTH, ConversationView
from ui.chat.model_bar import ModelBar
from ui.chat.settings_panel import SettingsPanel
from ui.chat.sidebar import Sidebar
from ui.theme import is_dark, mix


class ChatPage(QWidget):
    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chat = chat
        self.sidebar = Sidebar(chat)
        self.model_bar = ModelBar(chat)
        self.view = ConversationView(chat)
        self.composer = Composer(chat)
        self.settings_panel = SettingsPanel(chat)

        center = QWidget()
        center.setObjectName("chatCenter")
        column = QVBoxLayout(center)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.model_bar)
        column.addWidget(self.view, 1)
        composer_row = QWidget()
        composer_row.setObjectName("composerRow")
        row = QHBoxLayout(composer_row)
        row.setContentsMargins(16, 4, 16, 14)
        # The same centred column as the conversation, so the two line up.
        row.addStretch(1)
        row.addWidget(self.composer, 100)
        row.addStretch(1)
        self.composer.setMaximumWidth(COLUMN_WIDTH)
        column.addWidget(composer_row)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(center)
        self.splitter.addWidget(self.settings_panel)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([230, 760, 310])  # the settings fit without a scrollbar
        self.sidebar.setMinimumWidth(160)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self.model_bar.settings_button.toggled.connect(self._on_settings_toggled)
        self.model_bar.settings_button.setChecked(True)
        self._restyle()

    def _on_settings_toggled(self, shown: bool) -> None:
        self.settings_panel.setVisible(shown)

    def _restyle(self) -> None:
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        window = palette.color(QPalette.ColorRole.Window)
        text = palette.color(QPalette.ColorRole.Text)
        accent = palette.color(QPalette.ColorRole.Highlight)
        border = mix(base, text, 0.16)
        side = mix(window, base, 0.35 if is_dark(palette) else 0.0)
        self.setStyleSheet(f"""
            QFrame#sidebar {{ background: {side}; border-right: 1px solid {border}; }}
            QListView#conversationList {{ background: transparent; outline: 0; }}
            QListView#conversationList::item {{ padding: 7px 8px; border-radius: 8px; }}
            QListView#conversationList::item:selected {{
                background: {mix(side, accent, 0.25)}; color: {text.name()}; }}
            QListView#conversationList::item:hover:!selected {{
                background: {mix(side, text, 0.07)}; }}
            QPushButton#newChat {{ padding: 7px; border-radius: 8px; text-align: left;
                                   padding-left: 10px; font-weight: 600; }}
            QWidget#chatCenter, QWidget#composerRow {{ background: {base.name()}; }}
            QFrame#modelBar {{ background: {base.name()}; border-bottom: 1px solid {border}; }}
            QFrame#composer {{ background: {mix(base, text, 0.04)};
                               border: 1px solid {border}; border-radius: 14px; }}
            QPlainTextEdit#composerEdit {{ background: transparent; }}
            QPushButton#sendButton {{ background: {accent.name()};
                color: {palette.color(QPalette.ColorRole.HighlightedText).name()};
                border: none; border-radius: 10px; padding: 6px 16px; font-weight: 600; }}
            QPushButton#sendButton:disabled {{ background: {mix(base, text, 0.15)};
                                               color: {mix(base, text, 0.45)}; }}
            QPushButton#stopButton {{ background: {theme.ERROR}; color: white;
                border: none; border-radius: 10px; padding: 6px 16px; font-weight: 600; }}
            QLabel#modelState {{ color: {mix(base, text, 0.65)}; }}
            QLabel#statsLabel {{ color: {mix(base, text, 0.55)}; font-size: 11px; }}
        """)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._restyle()

