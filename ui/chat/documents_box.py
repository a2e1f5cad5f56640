"""Documents in the chat's settings: which collections this conversation answers from.

Chosen per conversation, like its tools, and kept in its settings
(:class:`app.docs.citing.DocChoice`). With one or more ticked, each message is searched
in them before the reply and the reply lists the passages it was given; the collections
themselves are made in the Documents tab.
"""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QGroupBox, QVBoxLayout, QWidget

from app.docs.citing import DocChoice
from ui.chat.chat_view_model import ChatViewModel
from ui.untrusted import PlainLabel


class DocumentsBox(QGroupBox):
    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__("Documents", parent)
        self.chat = chat
        self.checks: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)
        self.empty = PlainLabel("No document collections yet. Add files in the Documents "
                                "tab to let replies cite them.")
        self.empty.setWordWrap(True)
        self.empty.setObjectName("statsLabel")
        layout.addWidget(self.empty)
        self.rows = QVBoxLayout()
        self.rows.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.rows)
        chat.conversation_opened.connect(self.refresh)
        chat.docs.choice_changed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args: object) -> None:
        """The collections there are now, ticked where the open conversation uses them."""
        cid = self.chat.conversation_id
        chosen = self.chat.docs.choice(cid).collections if cid is not None else ()
        names = self.chat.docs.collections()
        for name in [n for n in self.checks if n not in names]:
            box = self.checks.pop(name)
            box.setParent(None)
            box.deleteLater()
        for name in names:
            if name not in self.checks:
                added = QCheckBox(name)  # a QCheckBox's text is plain
                added.setToolTip("Answer from this collection and cite its passages")
                added.toggled.connect(self._on_edited)
                self.checks[name] = added
                self.rows.addWidget(added)
            box = self.checks[name]
            blocked = box.blockSignals(True)
            box.setChecked(name in chosen)
            box.blockSignals(blocked)
        self.empty.setVisible(not names)

    def _on_edited(self, *_args: object) -> None:
        choice = DocChoice(tuple(n for n, box in self.checks.items() if box.isChecked()))
        cid = self.chat.conversation_id
        if cid is None:  # none open yet: the choice starts one, as a message would
            cid = self.chat.new_conversation()
        self.chat.docs.set_choice(cid, choice)
