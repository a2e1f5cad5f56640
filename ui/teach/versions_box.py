"""The taught versions of one base, under the Teach panel: which answers, and merging.

Every accepted Teach run is a version of its base (:class:`app.teach.versions.VersionStore`)
and the active one answers in chat. This box lists them with what each learned and kept,
makes the selected one active or rolls back to the base, and merges a version into the
weights: a version is an adapter the chat applies live, and a merge writes a stand-alone
GGUF (minutes, off the GUI thread, checked by llama.cpp). What a run does is the panel's;
this box only changes which finished version answers, so the panel tells the chat.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.finetune.merge import merge_version, mergeable
from app.models.library import LibraryError, ModelRecord
from app.teach.versions import VersionStore
from app.workspace import Workspace
from ui.background import Background


class VersionsBox(QWidget):
    activated = Signal(str, str)  # base, the model the chat answers with now
    merging = Signal(str)         # a version's merge started
    merge_ended = Signal(str)     # how the merge ended, in a sentence
    merged = Signal(str)          # a version that is now a stand-alone GGUF

    def __init__(self, workspace: Workspace, versions: VersionStore,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.versions = versions
        self.base: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Versions (the active one answers in chat):"))
        self.version_list = QListWidget()
        self.version_list.setMaximumHeight(110)
        layout.addWidget(self.version_list)
        row = QHBoxLayout()
        self.use_button = QPushButton("Use selected version")
        self.use_button.clicked.connect(self._on_use_selected)
        self.rollback_button = QPushButton("Roll back to the base")
        self.rollback_button.clicked.connect(self._on_rollback)
        self.merge_button = QPushButton("Merge into the weights")
        self.merge_button.setToolTip(
            "A version is an adapter the chat applies live on the base. Merging writes "
            "a stand-alone GGUF (checked by llama.cpp) that can be handed off or loaded "
            "without its base; the adapter stays.")
        self.merge_button.clicked.connect(self._on_merge)
        self._merger = Background(self)
        self.version_list.currentItemChanged.connect(lambda *_: self._update_merge_button())
        row.addWidget(self.merge_button)
        row.addStretch(1)
        row.addWidget(self.rollback_button)
        row.addWidget(self.use_button)
        layout.addLayout(row)

    def show_versions(self, base: str | None) -> None:
        """List ``base``'s versions, keeping the person's selection."""
        self.base = base
        selected = self.version_list.currentItem()
        keep = selected.data(Qt.ItemDataRole.UserRole) if selected is not None else None
        self.version_list.clear()
        if base is None:
            self.rollback_button.setEnabled(False)
            self.use_button.setEnabled(False)
            return
        active = self.versions.active(base)
        for v in self.versions.versions(base):
            r = v.report
            text = (f"{'● ' if v.name == active else '   '}{v.name} — learned "
                    f"{r.learned}/{r.total}, everyday answers changed "
                    f"{r.general_changed}/{r.general_total}, "
                    f"{self._kind(v.name)}, {v.created_at}")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, v.name)
            self.version_list.addItem(item)
            if v.name == keep:  # the person's choice survives a refresh
                self.version_list.setCurrentItem(item)
        self.rollback_button.setEnabled(active is not None)
        self.use_button.setEnabled(self.version_list.count() > 0)
        self._update_merge_button()

    def shutdown(self) -> None:
        # A merge in progress finishes in its own process; merging again later picks
        # up its file.
        self._merger.shutdown(timeout=1.0)

    # ------------------------------------------------------------ internals

    def _record(self, name: str) -> ModelRecord | None:
        try:
            return self.workspace.library.get(name)
        except LibraryError:
            return None

    def _kind(self, name: str) -> str:
        record = self._record(name)
        if record is None:
            return "removed from the library"
        if mergeable(record):
            return "adapter applied live"
        return f"merged ({record.provenance.quant or 'GGUF'})"

    def _selected_version(self) -> str | None:
        item = self.version_list.currentItem() or self.version_list.item(
            self.version_list.count() - 1)
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _update_merge_button(self) -> None:
        name = self._selected_version()
        record = self._record(name) if name else None
        self.merge_button.setEnabled(record is not None and mergeable(record)
                                     and not self._merger.busy)

    def _on_merge(self) -> None:
        name = self._selected_version()
        if name is None or self._merger.busy:
            return
        self.merging.emit(name)
        home, library = self.workspace.home, self.workspace.library
        self._merger.run(lambda: merge_version(home, library, name), self._on_merged,
                         self._on_merge_failed, name="teach-merge")
        self._update_merge_button()

    def _on_merged(self, record: ModelRecord) -> None:
        self.merge_ended.emit(f"{record.name} is now a stand-alone model "
                              f"({record.provenance.quant}, checked by llama.cpp); its "
                              "adapter is kept for switching live.")
        self.merged.emit(record.name)

    def _on_merge_failed(self, exc: BaseException) -> None:
        self.merge_ended.emit(str(exc))

    def _on_use_selected(self) -> None:
        name = self._selected_version()
        if name is not None and self.base is not None:
            self.versions.activate(self.base, name)
            self.activated.emit(self.base, name)

    def _on_rollback(self) -> None:
        if self.base is not None:
            self.versions.activate(self.base, None)
            self.activated.emit(self.base, self.base)
