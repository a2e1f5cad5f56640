"""The installed-models table: a Qt item model over the library's records.

It renders :class:`app.models.library.ModelRecord` s and their fit verdicts; it owns no state
of its own beyond the last snapshot it was given, so the Models tab refreshes it after
every change (import, download, remove) with :meth:`set_records`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from app.chat.template_choice import describe_source, source_for_file
from app.models.gguf_file import GGUFError
from app.models.library import Library, ModelRecord, UnknownModel
from app.models.memory_fit import FitVerdict
from app.units import format_bytes, format_params
from ui import theme
from ui.untrusted import tooltip as safe_tooltip

COLUMNS = ("Name", "Architecture", "Parameters", "Quantization", "Size", "Context",
           "Chat template", "Source", "Added", "Fits?")
FIT_COLUMN = COLUMNS.index("Fits?")
TEMPLATE_COLUMN = COLUMNS.index("Chat template")
FIT_COLOURS = {level: QColor(colour) for level, colour in theme.FIT_BACKGROUND.items()}
SOURCE_LABELS = {"starter": "starter (bundled)", "download": "Hugging Face",
                 "imported": "imported", "finetune": "fine-tune", "linked": "linked file"}

_Index = QModelIndex | QPersistentModelIndex


def template_labels(records: list[ModelRecord], library: Library,
                    choice_for: Callable[[str], str]) -> dict[str, str]:
    """The chat template each model is spoken to with, in words, decided as the chat
    decides it (:func:`app.chat.template_choice.template_source`). A base without a
    template of its own is read for its family's markers: run it off the GUI thread."""
    labels = {}
    for record in records:
        try:
            source = source_for_file(_template_file(record, library),
                                     record.info.has_chat_template,
                                     record.info.architecture,
                                     choice_for(record.name))
        except GGUFError:
            labels[record.name] = "?"
            continue
        labels[record.name] = describe_source(source)
    return labels


def _template_file(record: ModelRecord, library: Library) -> Path:
    """The file whose vocabulary the chat uses: a live adapter's base's."""
    if record.live_only:
        try:
            return library.get(str(record.provenance.base_model)).path
        except UnknownModel:
            pass
    return record.path


def record_size(record: ModelRecord) -> int | None:
    """The model file's size: as read at import, else as the file is now (a model
    registered without one showed "?"); None when neither is known."""
    size = record.info.file_size
    if size:
        return size
    try:
        return record.path.stat().st_size
    except OSError:
        return None


class LibraryTableModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.records: list[ModelRecord] = []
        self.verdicts: dict[str, FitVerdict] = {}
        self.templates: dict[str, str] = {}  # by name; "…" until read (template_labels)

    def set_records(self, records: list[ModelRecord],
                    verdicts: dict[str, FitVerdict] | None = None) -> None:
        self.beginResetModel()
        self.records = list(records)
        self.verdicts = dict(verdicts or {})
        self.endResetModel()

    def set_verdicts(self, verdicts: dict[str, FitVerdict]) -> None:
        self.verdicts = dict(verdicts)
        if self.records:
            self.dataChanged.emit(self.index(0, FIT_COLUMN),
                                  self.index(len(self.records) - 1, FIT_COLUMN))

    def set_templates(self, templates: dict[str, str]) -> None:
        self.templates = dict(templates)
        if self.records:
            self.dataChanged.emit(self.index(0, TEMPLATE_COLUMN),
                                  self.index(len(self.records) - 1, TEMPLATE_COLUMN))

    def record_at(self, row: int) -> ModelRecord | None:
        return self.records[row] if 0 <= row < len(self.records) else None

    def row_of(self, name: str) -> int:
        for row, record in enumerate(self.records):
            if record.name == name:
                return row
        return -1

    # ------------------------------------------------------------ Qt model

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.records)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        record = self.record_at(index.row())
        if record is None:
            return None
        column = index.column()
        verdict = self.verdicts.get(record.name)
        if role == Qt.ItemDataRole.DisplayRole and column == TEMPLATE_COLUMN:
            return self.templates.get(record.name, "…")
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(record, column, verdict)
        if role == Qt.ItemDataRole.BackgroundRole and column == FIT_COLUMN and verdict:
            return QBrush(FIT_COLOURS[verdict.level])
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == FIT_COLUMN and verdict:
                return safe_tooltip(verdict.detail)
            return safe_tooltip(str(record.path))
        if role == Qt.ItemDataRole.UserRole:
            return record
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (2, 4, 5):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _text(record: ModelRecord, column: int, verdict: FitVerdict | None) -> str:
        info = record.info
        if column == 0:
            return record.name
        if column == 1:
            return info.architecture
        if column == 2:
            return format_params(info.parameters)
        if column == 3:
            return info.quantization
        if column == 4:
            return format_bytes(record_size(record), unknown="–")
        if column == 5:
            ctx = info.context_length
            return f"{ctx:,}" if ctx else "?"
        if column == 7:
            label = SOURCE_LABELS.get(record.source, record.source)
            repo = record.provenance.repo
            return f"{label}: {repo}" if repo else label
        if column == 8:
            return record.added_at.replace("T", " ")[:16]
        if column == FIT_COLUMN:
            if verdict is None:
                return "…"
            return f"{verdict.summary} ({format_bytes(verdict.estimate.typical)})"
        return ""
