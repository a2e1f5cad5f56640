"""The box that says a Teach would repeat the run the gate refused, with a button that
removes the corrections the gate named.

Whether a refusal still applies (the corrections unchanged since the refused run) is
decided in :mod:`app.teach.refusal`, which ``hearth teach`` asks too.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from app.chat.corrections import CorrectionStore, TrainingExample
from app.teach.refusal import Refusal, question
from app.teach.versions import VersionStore
from app.units import count
from ui.untrusted import ask


def _remove_culprits(parent: QWidget, corrections: CorrectionStore,
                     culprits: list[TrainingExample]) -> bool:
    """Ask, then delete the corrections the gate named; False when the person says No."""
    listed = "\n".join(f"• {question(ex)[:80]} → {ex.corrected[:80]}" for ex in culprits)
    # Their text is the person's (or a stranger's, imported): shown literally by ask().
    if not ask(parent, "Remove these corrections?",
               f"The gate found that {count(len(culprits), 'correction')} made the taught "
               f"model worse:\n\n{listed}\n\nRemove "
               f"{'it' if len(culprits) == 1 else 'them'} from the collected corrections? "
               "This cannot be undone."):
        return False
    for ex in culprits:
        corrections.delete(ex.id)
    return True


class RefusalBox(QWidget):
    """While a refusal applies: its reasons, what to do, and "Remove the corrections
    that caused it" (after asking)."""

    removed = Signal(int)  # how many corrections were deleted

    def __init__(self, corrections: CorrectionStore, versions: VersionStore,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.corrections, self.versions = corrections, versions
        self.refusal: Refusal | None = None
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # it quotes corrections
        self.label.setWordWrap(True)
        self.remove_button = QPushButton("Remove the corrections that caused it")
        self.remove_button.setToolTip("Delete the corrections the gate named (after "
                                      "asking); then Teach trains on the rest")
        self.remove_button.clicked.connect(self._on_remove)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        row.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)

    def show_refusal(self, refusal: Refusal | None, can_remove: bool = True) -> None:
        """Show ``refusal`` (None hides the box); removing waits while ``can_remove`` is
        False (a run in progress)."""
        self.refusal = refusal
        self.label.setText(refusal.message() if refusal else "")
        self.remove_button.setVisible(bool(
            refusal and refusal.named(self.corrections, self.versions)))
        self.remove_button.setEnabled(can_remove)
        self.setVisible(refusal is not None)

    def _on_remove(self) -> None:
        culprits = (self.refusal.named(self.corrections, self.versions)
                    if self.refusal is not None else [])
        if culprits and self.remove_button.isEnabled() and _remove_culprits(
                self, self.corrections, culprits):
            self.removed.emit(len(culprits))
