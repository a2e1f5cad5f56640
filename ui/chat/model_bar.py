"""The strip above the conversation: which model, and whether it is ready.

Picking another model loads it (in the worker; the window stays responsive) and the
state reads "Loading 40%", "Ready · 2048-token context", "Stopped" or "Failed".
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QWidget,
)

from ui import theme
from ui.chat.chat_view_model import ChatViewModel, ModelState
from ui.fit_text import ElidedLabel
from ui.untrusted import tooltip as safe_tooltip

PICKER_MIN_WIDTH, PICKER_MAX_WIDTH = 170, 380
"""The model picker's width range in pixels (the window's minimum width stays ≤ 780)."""
_DOTS = {ModelState.READY: theme.SUCCESS, ModelState.LOADING: theme.PENDING,
         ModelState.STARTING: theme.PENDING, ModelState.FAILED: theme.ERROR,
         ModelState.CRASHED: theme.ERROR}


class ModelBar(QFrame):
    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chat = chat
        self.setObjectName("modelBar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.picker = QComboBox()
        self.picker.setObjectName("modelPicker")
        self.picker.setToolTip("The model to chat with; picking one loads it")
        # As wide as the longest name, up to PICKER_MAX_WIDTH when the window has room;
        # never more than PICKER_MIN_WIDTH of the window's minimum width.
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.picker.setMinimumWidth(PICKER_MIN_WIDTH)
        self.picker.setMaximumWidth(PICKER_MAX_WIDTH)
        self.dot = QLabel("●")
        self.state = ElidedLabel()  # "Ready · 2048-token cont…" in a narrow column
        self.state.setObjectName("modelState")
        self.state.setMinimumWidth(40)  # elided rather than widening a narrow window
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(120)
        self.progress.setMaximumHeight(6)
        self.progress.hide()
        self.notice = QLabel()
        self.notice.setObjectName("modelNotice")
        self.notice.setTextFormat(Qt.TextFormat.PlainText)
        # Never widens the window: a narrow one clips the line (the tooltip has it all).
        self.notice.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.notice.hide()
        self.settings_button = QPushButton("Settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setToolTip("System prompt, sampling and model load settings")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        layout.setSpacing(8)
        layout.addWidget(self.picker)
        layout.addWidget(self.dot)
        layout.addWidget(self.state)
        layout.addWidget(self.progress)
        layout.addWidget(self.notice, 1)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        layout.addWidget(spacer)
        layout.addWidget(self.settings_button)

        self.refresh_models()
        self.picker.activated.connect(self._on_picked)
        chat.model_state_changed.connect(self._on_state_changed)
        chat.versions_changed.connect(lambda *_: self.refresh_models())  # item tooltips
        self._on_state_changed()

    def refresh_models(self) -> None:
        """Re-read the library (the Models tab may have added or removed one)."""
        blocked = self.picker.blockSignals(True)
        self.picker.clear()
        for record in self.chat.workspace.library.list():
            self.picker.addItem(record.name, record.name)
            answers = self.chat.model_for(record.name)
            tip = record.name if answers == record.name else (
                f"{record.name}\nAnswers with its taught version {answers} (roll back "
                "under Datasets to chat with the base itself)")
            # Plain text for the tooltip: a name comes from a file or the hub.
            self.picker.setItemData(self.picker.count() - 1, safe_tooltip(tip),
                                    Qt.ItemDataRole.ToolTipRole)
        if self.picker.count() == 0:
            self.picker.addItem("No models installed", None)
        index = self.picker.findData(self.chat.model_name)
        self.picker.setCurrentIndex(max(0, index))
        self.picker.blockSignals(blocked)
        # The list that drops down shows whole names, however narrow the box is.
        metrics = self.picker.view().fontMetrics()
        longest = max((metrics.horizontalAdvance(self.picker.itemText(i))
                       for i in range(self.picker.count())), default=0)
        self.picker.view().setMinimumWidth(longest + 48)
        self._show_current_name()

    def _show_current_name(self) -> None:
        name = self.picker.currentData()
        self.picker.setToolTip(safe_tooltip(f"{name}\nThe model to chat with; picking one "
                                            "loads it") if name else
                               "The model to chat with; picking one loads it")

    def _on_picked(self, index: int) -> None:
        name = self.picker.itemData(index)
        if name and (name != self.chat.model_name or self.chat.state != ModelState.READY):
            self.chat.choose_model(name)  # a base answers with its active version

    def _on_state_changed(self) -> None:
        chat = self.chat
        index = self.picker.findData(chat.model_name)
        if index >= 0 and index != self.picker.currentIndex():
            self.picker.setCurrentIndex(index)
            self._show_current_name()
        if chat.state == ModelState.READY and chat.loaded is not None:
            text = f"Ready · {chat.loaded.n_ctx}-token context"
        elif chat.state == ModelState.LOADING:
            text = f"Loading {chat.progress:.0%}"
        elif chat.state == ModelState.STARTING:
            text = "Starting the model worker…"
        elif chat.state == ModelState.FAILED:
            text = "Failed to load"
        elif chat.state == ModelState.CRASHED:
            text = "Worker stopped"
        else:
            text = "Not loaded"
        self.state.setText(text)
        if chat.notice:
            self.notice.setText("· safe CPU kernels (optimized ones crashed here)")
            self.notice.setToolTip(chat.notice)
        self.notice.setVisible(bool(chat.notice))
        self.dot.setStyleSheet(theme.colour_style(_DOTS.get(chat.state, theme.MUTED)))
        self.progress.setVisible(chat.state in (ModelState.LOADING, ModelState.STARTING))
        if chat.state == ModelState.STARTING:
            self.progress.setRange(0, 0)  # busy indicator until progress is known
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(round(chat.progress * 100))
