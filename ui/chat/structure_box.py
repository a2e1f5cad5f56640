"""Structured output in the chat's settings: free text, a JSON schema or a GBNF grammar.

The choice is part of the model's remembered sampling (``SamplingParams.json_schema`` /
``grammar``) and the worker enforces it with llama.cpp's grammar sampler, so every
reply parses. A schema or grammar that is not valid, or that would crash or exhaust
llama.cpp (:mod:`app.inference.grammar_limits`: the same check as the server's and the
worker's), is refused here with the reason, and the last good one stays in force. One
remembered from before such a check is shown refused too: each reply would fail on it.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QGroupBox, QPlainTextEdit, QVBoxLayout, QWidget

from app.inference.grammar_limits import StructureError, check_grammar, check_schema
from ui.chat.chat_view_model import ChatViewModel
from ui.untrusted import PlainLabel

FREE, SCHEMA, GRAMMAR = "free", "json_schema", "grammar"
HINTS = {FREE: "Replies are free text.",
         SCHEMA: "Every reply is JSON that fits this schema.",
         GRAMMAR: "Every reply follows this GBNF grammar (a 'root ::= ...' rule)."}


class StructureBox(QGroupBox):
    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__("Structured output", parent)
        self.chat = chat
        layout = QVBoxLayout(self)
        self.mode = QComboBox()
        for label, data in (("Free text", FREE), ("JSON schema", SCHEMA),
                            ("GBNF grammar", GRAMMAR)):
            self.mode.addItem(label, data)
        self.mode.setToolTip("Constrain every reply (enforced by llama.cpp's grammar "
                             "sampler)")
        layout.addWidget(self.mode)
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText('{"type": "object", "properties": {"answer": '
                                       '{"type": "string"}}, "required": ["answer"]}')
        self.editor.setFixedHeight(110)
        layout.addWidget(self.editor)
        self.hint = PlainLabel()
        self.hint.setWordWrap(True)
        self.hint.setObjectName("statsLabel")
        layout.addWidget(self.hint)
        self._timer = QTimer(self, singleShot=True, interval=500)
        self._timer.timeout.connect(self._on_edited)
        self.editor.textChanged.connect(self._timer.start)
        self.mode.currentIndexChanged.connect(self._on_mode_changed)
        chat.sampling_changed.connect(self._show)
        self._show()

    def _show(self) -> None:
        s = self.chat.sampling
        # Nothing set: a mode just chosen, with its field still empty, stays chosen.
        empty = self.mode.currentData() if not self.editor.toPlainText().strip() else FREE
        mode = SCHEMA if s.json_schema else GRAMMAR if s.grammar else empty
        for widget, call in ((self.mode, lambda: self.mode.setCurrentIndex(
                self.mode.findData(mode))), (self.editor, lambda: self.editor.setPlainText(
                    s.json_schema or s.grammar))):
            blocked = widget.blockSignals(True)
            call()
            widget.blockSignals(blocked)
        self.editor.setEnabled(mode != FREE)
        self.hint.setText(HINTS[mode])
        problem = _problem(mode, s.json_schema or s.grammar)
        if problem:
            self.hint.setText(f"Refused, so every reply fails until you fix or clear it: "
                              f"{problem}")

    def _on_mode_changed(self) -> None:
        self.editor.setEnabled(self.mode.currentData() != FREE)
        self._on_edited()

    def _on_edited(self) -> None:
        """Apply the field to the model's sampling, unless it is not a usable schema."""
        self._timer.stop()
        mode, text = self.mode.currentData(), self.editor.toPlainText().strip()
        problem = _problem(mode, text)
        if problem:
            self.hint.setText(f"Not applied: {problem}")
            return
        sampling = replace(self.chat.sampling, json_schema=text if mode == SCHEMA else "",
                           grammar=text if mode == GRAMMAR else "")
        self.chat.set_sampling(sampling)

    def flush(self) -> None:
        """Apply an edit still waiting for its debounce."""
        if self._timer.isActive():
            self._on_edited()


def _problem(mode: str, text: str) -> str | None:
    """Why ``text`` cannot be used as ``mode``'s structure, or None."""
    if not text or mode == FREE:
        return None
    try:
        if mode == SCHEMA:
            check_schema(text)
        else:
            check_grammar(text)
    except StructureError as exc:
        return str(exc)
    return None
