"""The Set up page's data: a file (chosen or dropped) or the corrections from chats.

Each choice is checked off the GUI thread (:func:`app.finetune.datasets.load_dataset`
through :class:`ui.background.Background`), and so is the snapshot of the corrections
that a run trains on (:meth:`app.chat.corrections.CorrectionStore.snapshot`); the result
is shown here (counts, or every problem by line) and handed on with
:attr:`DataPicker.checked`.
"""

from __future__ import annotations

from collections.abc import Callable
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
    unchanged = Signal()  # the corrections, snapshot again for Start, are the checked ones

    def __init__(self, home: HearthHome, corrections: CorrectionStore | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.corrections = corrections
        self.dataset: Dataset | None = None
        self.dataset_path: Path | None = None  # what is checked: the file or the corrections
        self.file_path: Path | None = None  # the file chosen or dropped
        self.fresh = False
        """The corrections were snapshot again for Start and are what is checked now;
        whoever starts the run clears it."""
        self._checks = Background(self)
        self._check_id = 0  # a newer choice makes the older checks' results stale
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
        self.check_corrections()

    def check_corrections(self, for_start: bool = False) -> None:
        """Snapshot the corrections into the home's datasets folder and check them, off
        the GUI thread. ``for_start``: Start asks whether they changed since they were
        checked; when they did not, :attr:`unchanged` is emitted instead of a new check."""
        corrections, folder, current = self.corrections, self.home.datasets, self.dataset
        assert corrections is not None

        def job() -> tuple[Path, Dataset | DatasetError | None]:
            path = corrections.snapshot(folder)
            if for_start and current is not None and path == current.path:
                return path, None
            return path, check_dataset(path)

        self._check(job, "the corrections", for_start)

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
        self._check(lambda: (path, check_dataset(path)), path.name)

    def _check(self, job: Callable[[], tuple[Path, Dataset | DatasetError | None]],
               what: str, for_start: bool = False) -> None:
        self._check_id += 1
        check_id, self.fresh = self._check_id, False
        if not for_start:  # Start's snapshot keeps the checked data shown meanwhile
            self.dataset_path = self.dataset = None
            self.validation_label.setStyleSheet("")
            self.validation_label.setText(f"Checking {what}…")
            self.issues_view.hide()
        self.checking.emit()
        self._checks.run(job, lambda done: self._on_checked(check_id, for_start, *done),
                         lambda exc: self._on_checked(check_id, for_start, None, exc),
                         name="dataset-check")

    def _on_checked(self, check_id: int, for_start: bool, path: Path | None,
                    result: Dataset | DatasetError | BaseException | None) -> None:
        if check_id != self._check_id:
            return  # a newer choice replaced this one
        self.fresh = for_start
        if result is None:
            self.unchanged.emit()
            return
        if path is None or not isinstance(result, Dataset | DatasetError):
            path = self.home.datasets / "corrections.jsonl"  # the snapshot failed
            result = DatasetError(path, [f"The corrections could not be written: {result}"])
        self.dataset_path = path
        self._on_dataset_checked(path, result)

    def _clear_dataset(self, message: str) -> None:
        self.dataset = None
        self.validation_label.setStyleSheet(theme.colour_style(theme.MUTED))
        self.validation_label.setText(message)
        self.issues_view.hide()
        self.cleared.emit()

    def _on_dataset_checked(self, path: Path, result: Dataset | DatasetError) -> None:
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
