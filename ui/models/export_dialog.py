"""Models > Export…: a library model written for Ollama, llama.cpp, peft/vLLM/TGI or
transformers, the same as ``hearth export`` (:mod:`app.models.handoff`).

The writing runs off the GUI thread (merged safetensors take a worker process and tens
of seconds); the dialog says what was written and the one command that uses it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.models.handoff import HandoffFormat, HandoffResult, export_model
from app.models.library import ModelRecord
from app.workspace import Workspace
from ui import theme
from ui.background import Background
from ui.fit_text import grow_to_fit
from ui.untrusted import PlainLabel

FORMAT_LABELS = {
    HandoffFormat.GGUF: "GGUF file (llama.cpp, LM Studio, Jan)",
    HandoffFormat.OLLAMA: "Ollama (GGUF + Modelfile)",
    HandoffFormat.PEFT: "LoRA adapter for peft, vLLM, TGI",
    HandoffFormat.SAFETENSORS: "Merged safetensors for transformers",
}


class ExportDialog(QDialog):
    def __init__(self, workspace: Workspace, record: ModelRecord,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace, self.record = workspace, record
        self.result: HandoffResult | None = None
        self.setWindowTitle(f"Export {record.name}")
        self.format = QComboBox()
        for fmt, label in FORMAT_LABELS.items():
            if fmt is HandoffFormat.PEFT and record.source != "finetune":
                continue  # only a Hearth fine-tune has an adapter to hand off
            self.format.addItem(label, fmt.value)
        self.folder = QLineEdit(str(Path.home() / "hearth-export"))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        self.system = QLineEdit()
        self.system.setPlaceholderText("Optional, for the Modelfile")
        self.status = PlainLabel("")
        self.status.setWordWrap(True)
        # The command to run is for copying; the dialog grows to show all of it.
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton(
            "Export", QDialogButtonBox.ButtonRole.ActionRole)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("Into folder", folder_row)
        form.addRow("System prompt", self.system)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self._background = Background(self)
        self.export_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)

    def _on_browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Export into", self.folder.text())
        if chosen:
            self.folder.setText(chosen)

    def start(self) -> None:
        fmt = HandoffFormat(self.format.currentData())
        folder = Path(self.folder.text()).expanduser()
        sampling = self.workspace.settings.sampling_for(self.record.name)
        system = self.system.text()
        self.export_button.setEnabled(False)
        self.status.setStyleSheet("")
        self.status.setText(f"Writing {FORMAT_LABELS[fmt].lower()}…")
        self._background.run(lambda: export_model(self.record, folder, fmt, sampling, system),
                             self._on_done, self._on_failed, name="export")

    def _on_done(self, result: HandoffResult) -> None:
        self.result = result
        self.export_button.setEnabled(True)
        self.status.setStyleSheet(theme.colour_style(theme.SUCCESS))
        files = "\n".join(str(path) for path in result.files)
        self.status.setText(f"Written:\n{files}\n\nUse it: {result.how_to_use}")
        grow_to_fit(self)

    def _on_failed(self, exc: BaseException) -> None:
        self.export_button.setEnabled(True)
        self.status.setStyleSheet(theme.colour_style(theme.ERROR))
        self.status.setText(f"Not exported: {exc}")
        grow_to_fit(self)

    def done(self, code: int) -> None:
        self._background.shutdown()
        super().done(code)
