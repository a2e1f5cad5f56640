"""The Compare dialog: a run's base and tuned models side by side.

It opens :class:`ui.finetune.compare_view.CompareView` on the run's base model and its
exported GGUF, primed with prompts from the run's held-out records.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QVBoxLayout, QWidget

from app.finetune.runs.delete import RunFiles
from app.finetune.runs.folder import RunFolder
from app.paths import HearthHome
from app.settings import LoadSettings
from ui.finetune.compare_view import CompareView


class CompareDialog(QDialog):
    def __init__(self, home: HearthHome, files: RunFiles,
                 load_settings: LoadSettings,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        spec = files.spec
        tuned_name = files.model.name if files.model else spec.out_name
        self.setWindowTitle(f"Compare {spec.base.name} and {tuned_name}")
        self.resize(1000, 640)
        self.view = CompareView((f"Base: {spec.base.name}", Path(spec.base.path)),
                                (f"Tuned: {tuned_name}", files.gguf),
                                load_settings, log_dir=home.logs, home=home)
        box = QVBoxLayout(self)
        box.addWidget(self.view)
        self.view.prompts_edit.setPlainText(
            "\n".join(RunFolder(files.folder).sample_prompts()))
        self.finished.connect(self.view.shutdown)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
