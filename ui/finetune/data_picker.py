"""The Set up page's data: a file (chosen or dropped) or the corrections from chats.

Each choice is checked off the GUI thread (:func:`app.finetune.datasets.load_dataset`
through :class:`ui.background.Background`); the result is shown here (counts, or every
problem by line) and handed on with :attr:`DataPicker.checked`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.corrections import CorrectionStore
from app.finetune.datasets import Dataset, DatasetError, load_dataset
from app.paths import HearthHome
from app.units import count
from ui import theme
from ui.background import Background
from ui.untrusted import PlainLabel


def check_dataset(path: Path) -> Dataset | DatasetError:
    """The dataset, or every reason it cannot be used (never raises: shown, not thrown)."""
    try:
        return load_dataset(path)
    except DatasetError as exc:
        return exc
    except Exception as exc:  # any failure is shown, never raised
        return DatasetError(path, [f"{path.name} cannot be read: {exc}"])


class DataPicker(QWidget):
    checking = Signal()  # a check began: nothing can start until it ends
    checked = Signal(object)  # Dataset or DatasetError, for the current choice
    cleared = Signal()  # no data chosen (any more)

    def __init__(self, home: HearthHome, corrections: CorrectionStore | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.corrections = corrections
        self.dataset: Dataset | None = None
        self.dataset_path: Path | None = None  # what is checked: the file or the corrections
        self.file_path: Path | None = None  # the file chosen or dropped
        self._checks = Background(self)
        form = QVBoxLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.source_group = QButtonGroup(self)
        file_row = QHBoxLayout()
        self.file_radio = QRadioButton("A file")
        self.file_radio.setChecked(True)
        self.choose_button = QPushButton("Choose…")
        self.choose_button.clicked.connect(self._on_choose_file)
        file_row.addWidget(self.file_radio)
        file_row.addStretch(1)
        file_row.addWidget(self.choose_button)
        form.addLayout(file_row)
        self.file_label = PlainLabel("Choose or drop a .jsonl, .json or .txt file: OpenAI "
                                     "chat, ShareGPT, Alpaca or plain text.")
        self.file_label.setWordWrap(True)
        self.file_label.setStyleSheet(theme.colour_style(theme.MUTED))
        form.addWidget(self.file_label)
        self.corrections_radio = QRadioButton("Corrections from chats")
        self.corrections_radio.setEnabled(self.corrections is not None)
        form.addWidget(self.corrections_radio)
        self.source_group.addButton(self.file_radio)
        self.source_group.addButton(self.corrections_radio)
        self.corrections_radio.toggled.connect(self._on_source_changed)
        self.validation_label = PlainLabel("")
        self.validation_label.setWordWrap(True)
        self.validation_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addWidget(self.validation_label)
        self.issues_view = QPlainTextEdit(readOnly=True)
        self.issues_view.setMaximumHeight(110)
        self.issues_view.hide()
        form.addWidget(self.issues_view)

        self._refresh_corrections_count()

    # ================================================================ the data

    def _refresh_corrections_count(self) -> None:
        if self.corrections is None:
            self.corrections_radio.setToolTip("Not available here")
            return
        n = self.corrections.count()
        self.corrections_radio.setText(f"Corrections from chats ({n} collected)")

    def refresh_corrections(self, _count: int | None = None) -> None:
        """Updates the count and, when the corrections are the chosen data, checks them
        again."""
        self._refresh_corrections_count()
        if self.corrections_radio.isChecked():
            self._use_corrections()

    def _on_source_changed(self, corrections: bool) -> None:
        if corrections:
            self._use_corrections()
        elif self.file_path is not None:
            self.check_path(self.file_path)
        else:
            self._clear_dataset("Choose or drop a data file.")

    def _use_corrections(self) -> None:
        if self.corrections is None:
            return
        self._refresh_corrections_count()
        if self.corrections.count() == 0:
            self._clear_dataset("No corrections yet: use “Correct this” on a reply in a chat "
                                "to collect some.")
            return
        self.check_path(self.export_corrections())

    def export_corrections(self) -> Path:
        """Write the corrections to the home's datasets folder, named by their content
        (so a run's provenance keeps pointing at exactly what it trained on)."""
        assert self.corrections is not None
        self.home.datasets.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(suffix=".jsonl", dir=self.home.datasets)
        os.close(fd)
        tmp = Path(tmp_name)
        self.corrections.export_jsonl(tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:12]
        target = self.home.datasets / f"corrections-{digest}.jsonl"
        if target.exists():
            tmp.unlink()
        else:
            os.replace(tmp, target)
        return target

    def _on_choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose training data", str(Path.home()),
            "Datasets (*.jsonl *.json *.txt *.md);;All files (*)")
        if path:
            self.load_file(Path(path))

    def load_file(self, path: Path) -> None:
        """Use ``path`` as the data (what Choose… and a drop do)."""
        self.file_path = path
        for radio in (self.file_radio, self.corrections_radio):
            radio.blockSignals(True)
        self.file_radio.setChecked(True)
        for radio in (self.file_radio, self.corrections_radio):
            radio.blockSignals(False)
        self.file_label.setText(str(path))
        self.file_label.setStyleSheet("")
        self.check_path(path)

    def check_path(self, path: Path) -> None:
        self.dataset_path = path
        self.dataset = None
        self.validation_label.setStyleSheet("")
        self.validation_label.setText(f"Checking {path.name}…")
        self.issues_view.hide()
        self.checking.emit()
        self._checks.run(lambda: check_dataset(path),
                         lambda result: self._on_dataset_checked(path, result),
                         name="dataset-check")

    def _clear_dataset(self, message: str) -> None:
        self.dataset = None
        self.validation_label.setStyleSheet(theme.colour_style(theme.MUTED))
        self.validation_label.setText(message)
        self.issues_view.hide()
        self.cleared.emit()

    def _on_dataset_checked(self, path: Path, result: Dataset | DatasetError) -> None:
        if path != self.dataset_path:
            return  # a newer choice replaced this one
        if isinstance(result, DatasetError):
            self._show_problems(path, result)
        else:
            self.dataset = result
            s = result.stats
            self.validation_label.setStyleSheet(theme.colour_style(theme.SUCCESS))
            self.validation_label.setText(
                f"✓ {path.name}: {result.format} format, {count(s.records, 'record')}"
                + (f" ({s.duplicates_dropped} duplicates dropped)" if s.duplicates_dropped
                   else "")
                + f", about {s.approx_tokens:,} tokens; longest record on line "
                  f"{s.longest_record_line} ({s.longest_record_chars:,} characters).")
            self.issues_view.hide()
        self.checked.emit(result)

    def _show_problems(self, path: Path, error: DatasetError) -> None:
        self.dataset = None
        self.validation_label.setStyleSheet(theme.colour_style(theme.ERROR))
        n = len(error.issues)
        self.validation_label.setText(
            f"{path.name} cannot be used: {n} problem{'s' if n != 1 else ''}, "
            f"{error.usable} usable record{'s' if error.usable != 1 else ''}. "
            "Fix these lines (or remove them) and choose the file again.")
        self.issues_view.setPlainText("\n".join(error.issues))
        self.issues_view.show()

    def shutdown(self) -> None:
        self._checks.shutdown()
