"""A model's facts and the data laid out by its chat template, computed off the GUI thread.

The set-up page shows the first records as the model will see them and an estimate
measured on up to 500 records. Both need the model's GGUF header (tens of ms: it holds
the whole vocabulary) and a render through the model's chat template, a stranger's
program (each render is bounded by app.chat.template's limits). Neither runs on the GUI
thread: :class:`DataLayouts` runs them through :class:`ui.background.Background`, keeps
the answers (errors included) and says :attr:`DataLayouts.ready` when one arrives.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QObject, Signal

from app.errors import HearthError
from app.finetune.datasets import Dataset
from app.finetune.plan import DataShape, ModelFacts, PreviewRecord, measure, model_facts, preview
from app.models.library import ModelRecord
from ui import theme
from ui.background import Background

PREVIEW_RECORDS = 3
CACHED = 8  # a few models and datasets back is plenty

Key = tuple[str, str]  # (model name, dataset sha256)
Layout = tuple[list[PreviewRecord] | HearthError, DataShape | HearthError]


def preview_html(records: list[PreviewRecord]) -> str:
    """The preview as HTML: template text plain, the trained-on spans highlighted."""
    blocks = []
    for record in records:
        parts = []
        for text, trained in record.segments:
            escaped = html.escape(text)
            if trained:
                escaped = (f'<span style="background-color:{theme.HIGHLIGHT_BACKGROUND}; '
                           f'color:{theme.HIGHLIGHT_TEXT}">{escaped}</span>')
            parts.append(escaped)
        muted = theme.readable(theme.MUTED)
        blocks.append(f'<p style="color:{muted}; margin-bottom:2px">Record from line '
                      f'{record.line}</p><pre style="white-space:pre-wrap; margin-top:0">'
                      f'{"".join(parts)}</pre>')
    return "".join(blocks)


def _lay_out(dataset: Dataset, facts: ModelFacts) -> Layout:
    try:
        records: list[PreviewRecord] | HearthError = preview(dataset, facts.template,
                                                            PREVIEW_RECORDS)
    except HearthError as exc:  # the template cannot lay this data out (ChatTemplateError)
        records = exc
    try:
        shape: DataShape | HearthError = measure(dataset, facts.template)
    except HearthError as exc:
        shape = exc
    return records, shape


def _failed(exc: BaseException) -> Layout:
    """What an unexpected failure of the layout shows: said, never a blank preview."""
    error = HearthError(f"laying out the records failed: {exc}")
    return error, error


class DataLayouts(QObject):
    """Cached, off-thread: ``facts(record)`` and ``layout(key, dataset, facts)`` answer
    at once when they know, else start the work, answer None, and emit :attr:`ready`."""

    ready = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._background = Background(self)
        self._facts: dict[str, ModelFacts | Exception] = {}
        self._layouts: dict[Key, Layout] = {}
        self._reading: set[str] = set()
        self._laying_out: set[Key] = set()

    @property
    def busy(self) -> bool:
        return bool(self._reading or self._laying_out)

    def facts(self, record: ModelRecord) -> ModelFacts | Exception | None:
        """The model's facts, or why they cannot be read; None while they are read."""
        if record.name in self._facts:
            return self._facts[record.name]
        if record.name not in self._reading:
            self._reading.add(record.name)
            name = record.name
            self._background.run(lambda: model_facts(record),
                                 lambda facts: self._on_facts(name, facts),
                                 lambda exc: self._on_facts(name, exc), name="model-facts")
        return None

    def _on_facts(self, name: str, facts: ModelFacts | BaseException) -> None:
        self._reading.discard(name)
        if len(self._facts) >= CACHED:
            self._facts.clear()
        self._facts[name] = facts if isinstance(facts, ModelFacts | Exception) else \
            RuntimeError(str(facts))
        self.ready.emit()

    def layout(self, key: Key, dataset: Dataset, facts: ModelFacts) -> Layout | None:
        """The preview and the data's shape (each may be the template's error); None while
        the records are laid out."""
        if key in self._layouts:
            return self._layouts[key]
        if key not in self._laying_out:
            self._laying_out.add(key)
            self._background.run(lambda: _lay_out(dataset, facts),
                                 lambda result: self._on_laid_out(key, result),
                                 lambda exc: self._on_laid_out(key, _failed(exc)),
                                 name="template-layout")
        return None

    def _on_laid_out(self, key: Key, result: Layout) -> None:
        self._laying_out.discard(key)
        if len(self._layouts) >= CACHED:
            self._layouts.clear()
        self._layouts[key] = result
        self.ready.emit()

    def shutdown(self) -> None:
        self._background.shutdown()  # each render is bounded, so this ends
