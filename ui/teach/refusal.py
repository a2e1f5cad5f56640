"""What the panel remembers of a run the gate refused, so the same run is not repeated;
and the box that says so, with a button that removes the corrections the gate named.

Training the same corrections with the same settings makes the same model, which the gate
refuses for the same reasons. After a refusal, Teach stays off for that base until the
corrections it trained on change (one removed, added or reworded): the panel compares a
snapshot of ``(id, corrected reply)`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from app.chat.corrections import CorrectionStore, TrainingExample
from app.finetune.runs.codec import RecordError
from app.finetune.runs.folder import RunError, RunFolder
from app.paths import HearthHome
from app.teach.run import corrections_for
from app.teach.versions import VersionStore
from app.units import count
from ui.untrusted import ask

Snapshot = tuple[tuple[int, str], ...]
NOTHING_CHANGED = ("Nothing changed since the refused run: remove or reword the "
                   "corrections it names")


def snapshot(corrections: CorrectionStore, versions: VersionStore, base: str) -> Snapshot:
    """The corrections a teach of ``base`` trains on, as ``(id, corrected reply)`` pairs."""
    return tuple(sorted((ex.id, ex.corrected)
                        for ex in corrections_for(corrections, versions, base)))


def _question(example: TrainingExample) -> str:
    """The question a correction answers (its last user message)."""
    return next((m["content"] for m in reversed(example.prompt) if m["role"] == "user"), "")


@dataclass(frozen=True)
class Refusal:
    """The last teach run of ``base``, refused by the gate, and what it trained on."""

    base: str
    trained_on: Snapshot
    reasons: list[str] = field(default_factory=list)
    culprit_ids: list[int] = field(default_factory=list)
    """The corrections (CorrectionStore ids) the gate found to cause the refusal."""

    @classmethod
    def of(cls, base: str, trained_on: Snapshot, report: dict[str, Any]) -> Refusal:
        ids = [int(i) for i in report.get("culprit_ids") or [] if isinstance(i, int)]
        return cls(base, trained_on, [str(r) for r in report.get("reasons") or []], ids)

    def still_applies(self, now: Snapshot) -> bool:
        """True while the corrections are those the refused run trained on."""
        return now == self.trained_on

    def message(self) -> str:
        """What the panel says while Teach is off: why, and what to do instead."""
        why = "; ".join(self.reasons) or "its report says why"
        return f"The gate refused the last Teach: {why}.\n{NOTHING_CHANGED}."

    def culprits(self, corrections: CorrectionStore, versions: VersionStore
                 ) -> list[TrainingExample]:
        """The corrections the gate named that are still collected."""
        named = set(self.culprit_ids)
        return [ex for ex in corrections_for(corrections, versions, self.base)
                if ex.id in named]


def last_refusal(home: HearthHome, base: str) -> Refusal | None:
    """The newest teach run of ``base`` when the gate refused it, read back from its run
    folder (what it trained on is in run.json), so a restart does not forget it."""
    for spec_file in sorted(home.runs.glob("*/run.json"), reverse=True):  # newest first
        folder = RunFolder(spec_file.parent)
        try:
            teach = folder.spec().teach
        except (RunError, RecordError):
            continue
        if teach is None or teach.base != base:
            continue
        summary = folder.summary()
        report = summary.teach if summary is not None else None
        if not report or report.get("passed"):
            return None  # the last one passed, or did not finish: nothing to hold back
        trained_on = tuple(sorted((c["id"], str(c.get("chosen", ""))) for c in teach.cases
                                  if c.get("source") == "correction"
                                  and isinstance(c.get("id"), int)))
        return Refusal.of(base, trained_on, report)
    return None


class Refusals:
    """Per base, the last teach run the gate refused: remembered through the session,
    and read back once from the run folders (so a restart does not forget it)."""

    def __init__(self, home: HearthHome, corrections: CorrectionStore,
                 versions: VersionStore) -> None:
        self.home, self.corrections, self.versions = home, corrections, versions
        self._by_base: dict[str, Refusal] = {}
        self._read_back: set[str] = set()

    def record(self, base: str, trained_on: Snapshot, report: dict[str, Any]) -> None:
        self._read_back.add(base)
        self._by_base[base] = Refusal.of(base, trained_on, report)

    def forget(self, base: str) -> None:
        """A run of ``base`` passed: nothing to hold back any more."""
        self._read_back.add(base)
        self._by_base.pop(base, None)

    def applying(self, base: str | None) -> Refusal | None:
        """The refusal of ``base`` while its corrections are those it trained on."""
        if not base:
            return None
        if base not in self._read_back:
            self._read_back.add(base)
            found = last_refusal(self.home, base)
            if found is not None:
                self._by_base[base] = found
        refusal = self._by_base.get(base)
        if refusal is None or not refusal.still_applies(
                snapshot(self.corrections, self.versions, base)):
            return None
        return refusal


def _remove_culprits(parent: QWidget, corrections: CorrectionStore,
                     culprits: list[TrainingExample]) -> bool:
    """Ask, then delete the corrections the gate named; False when the person says No."""
    listed = "\n".join(f"• {_question(ex)[:80]} → {ex.corrected[:80]}" for ex in culprits)
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
            refusal and refusal.culprits(self.corrections, self.versions)))
        self.remove_button.setEnabled(can_remove)
        self.setVisible(refusal is not None)

    def _on_remove(self) -> None:
        culprits = (self.refusal.culprits(self.corrections, self.versions)
                    if self.refusal is not None else [])
        if culprits and self.remove_button.isEnabled() and _remove_culprits(
                self, self.corrections, culprits):
            self.removed.emit(len(culprits))
