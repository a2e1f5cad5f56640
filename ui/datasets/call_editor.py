"""The call a reply should have made, as *Correct this* edits it: the tool and its arguments.

A reply that called a tool is corrected by picking the right tool (among those the
conversation offers) and writing the right arguments as JSON, pre-filled with the model's
own call. What is wrong with them (not JSON, a required argument missing, a value the
schema does not allow) is said by the store when saving
(:func:`app.chat.corrections.checked_calls`), under the editor. Unticked, the correction
is words only: the model should have answered instead of calling.
"""

from __future__ import annotations

import json

from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from app.chat.tools import Tool, ToolCall, new_call_id
from ui.untrusted import PlainLabel


class CallEditor(QWidget):
    """Pick the tool and edit the arguments of one call."""

    def __init__(self, original: ToolCall, tools: list[Tool],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.original = original
        self.tools = {t.name: t for t in tools}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.enabled = QCheckBox("It should call a tool (untick: it should answer in words)")
        self.enabled.setChecked(True)
        self.enabled.toggled.connect(self._on_enabled)
        layout.addWidget(self.enabled)
        self.tool = QComboBox()
        for name in self.tools:  # names are plain (app.chat.tools.NAME)
            self.tool.addItem(name)
        if not self.tools:
            self.tool.addItem(original.name)
        self.tool.setCurrentText(original.name)
        self.tool.currentTextChanged.connect(self._on_tool)
        layout.addWidget(self.tool)
        # A stranger's description (an MCP server's): shown as text.
        self.about = PlainLabel()
        self.about.setWordWrap(True)
        layout.addWidget(self.about)
        layout.addWidget(QLabel("Arguments (JSON):"))
        self.arguments = QPlainTextEdit(_pretty(original.arguments))
        layout.addWidget(self.arguments, 1)
        self._on_tool(self.tool.currentText())

    def call(self) -> ToolCall | None:
        """The call as written (checked when saved), or None: words only."""
        if not self.enabled.isChecked():
            return None
        return ToolCall(new_call_id(), self.tool.currentText(),
                        self.arguments.toPlainText().strip())

    def unchanged(self) -> bool:
        """The same tool with JSON-equal arguments as the model's own call."""
        call = self.call()
        if call is None or call.name != self.original.name:
            return False
        try:
            return bool(json.loads(call.arguments) == json.loads(self.original.arguments))
        except ValueError:
            return False

    def _on_enabled(self, on: bool) -> None:
        for widget in (self.tool, self.about, self.arguments):
            widget.setEnabled(on)

    def _on_tool(self, name: str) -> None:
        tool = self.tools.get(name)
        if tool is None:
            self.about.setText("No tool is offered in this conversation now: switch its "
                               "servers on under Tools to correct the call.")
            return
        properties = tool.parameters.get("properties") or {}
        listed = ", ".join(properties) if isinstance(properties, dict) else ""
        self.about.setText(f"{tool.description.strip()[:300]}"
                           + (f"\nArguments: {listed}" if listed else ""))


def _pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments
