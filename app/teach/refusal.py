"""Whether a Teach would only repeat the run the gate just refused, and what it named.

Training the same corrections with the same settings makes the same model (fixed seeds),
which the gate refuses for the same reasons. So after a refusal, Teach waits until the
corrections of that base change (one removed, added or reworded): the window keeps its
button off (:mod:`ui.teach.refusal`) and ``hearth teach`` says so and stops. Both ask
here, so they agree on what "unchanged" means.

What a refused run trained on is read back from its run folder, so a restart does not
forget it. A round that continued a version (:mod:`app.teach.continuing`) holds the text
of the corrections it trained or checked; the other earlier ones are known by id, and
count as unchanged while they were not edited after the run was created.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from app.chat.corrections import CorrectionStore, TrainingExample
from app.codec import RecordError
from app.finetune.runs.folder import RunError, RunFolder
from app.finetune.runs.records import RunSpec
from app.paths import HearthHome
from app.teach.records import CaseSource, GateReport, TeachSpec
from app.teach.run import corrections_for
from app.teach.versions import VersionStore

Snapshot = tuple[tuple[int, str], ...]
"""A set of corrections as ``(id, corrected reply)`` pairs, sorted."""
Trained = tuple[tuple[int, str | None], ...]
"""What a run trained on: ``(id, corrected reply)``, the reply None where the run folder
does not hold it (an earlier correction of a continued version, neither replayed nor
checked)."""
NOTHING_CHANGED = ("Nothing changed since the refused run: remove or reword the "
                   "corrections it names")


def snapshot(corrections: CorrectionStore, versions: VersionStore, base: str) -> Snapshot:
    """The corrections a teach of ``base`` trains on, as ``(id, corrected reply)`` pairs."""
    return tuple(sorted((ex.id, ex.corrected)
                        for ex in corrections_for(corrections, versions, base)))


def question(example: TrainingExample) -> str:
    """The question a correction answers (its last user message)."""
    return next((m["content"] for m in reversed(example.prompt) if m["role"] == "user"), "")


@dataclass(frozen=True)
class Refusal:
    """The last teach run of ``base``, refused by the gate, and what it trained on."""

    base: str
    trained_on: Trained
    reasons: list[str] = field(default_factory=list)
    culprit_ids: list[int] = field(default_factory=list)
    """The corrections (CorrectionStore ids) the gate found to cause the refusal."""
    culprits: list[str] = field(default_factory=list)
    """The gate's words for them ("correction 2 (“Who invented…”)"), extra data too."""
    run_id: str = ""
    created_at: str = ""
    """When the refused run was created: a correction edited later is a change."""

    @classmethod
    def of(cls, base: str, trained_on: Trained, report: GateReport, run_id: str = "",
           created_at: str = "") -> Refusal:
        return cls(base, tuple(sorted(trained_on)), list(report.reasons),
                   list(report.culprit_ids), list(report.culprits), run_id, created_at)

    def still_applies(self, now: list[TrainingExample]) -> bool:
        """True while ``now`` (the base's corrections) are those the refused run trained
        on: the same ids, the same replies (or, where the run folder holds no reply,
        none edited since the run was created)."""
        current = {ex.id: ex for ex in now}
        if set(current) != {ident for ident, _ in self.trained_on}:
            return False
        return all(current[ident].corrected == text if text is not None
                   else bool(self.created_at) and current[ident].updated_at <= self.created_at
                   for ident, text in self.trained_on)

    def message(self) -> str:
        """What the panel says while Teach is off: why, and what to do instead."""
        why = "; ".join(self.reasons) or "its report says why"
        return f"The gate refused the last Teach: {why}.\n{NOTHING_CHANGED}."

    def named(self, corrections: CorrectionStore, versions: VersionStore
              ) -> list[TrainingExample]:
        """The corrections the gate named that are still collected."""
        named = set(self.culprit_ids)
        return [ex for ex in corrections_for(corrections, versions, self.base)
                if ex.id in named]


def trained_on(teach: TeachSpec) -> Trained:
    """What a teach run trained on, from its run.json (see :data:`Trained`)."""
    texts = {c.id: c.chosen for c in teach.cases
             if c.source in (CaseSource.CORRECTION, CaseSource.EARLIER) and c.id is not None}
    ids = set(texts) | {i for i in teach.corrections if isinstance(i, int)}
    return tuple(sorted((i, texts.get(i)) for i in ids))


def teach_runs(home: HearthHome, base: str) -> Iterator[tuple[RunFolder, RunSpec]]:
    """The teach runs of ``base``, newest first (run ids begin with their time); run
    folders that cannot be read are passed over."""
    for spec_file in sorted(home.runs.glob("*/run.json"), reverse=True):
        folder = RunFolder(spec_file.parent)
        try:
            spec = folder.spec()
        except (RunError, RecordError):
            continue
        if spec.teach is not None and spec.teach.base == base:
            yield folder, spec


def last_refusal(home: HearthHome, base: str) -> Refusal | None:
    """The newest teach run of ``base`` when the gate refused it, read back from its run
    folder; None when the newest passed or did not finish (nothing to hold back)."""
    for folder, spec in teach_runs(home, base):
        assert spec.teach is not None
        summary = folder.summary()
        report = summary.teach if summary is not None else None
        if report is None or report.passed or spec.teach.extra:
            return None  # passed, unfinished, or trained with other data than a Teach's
        return Refusal.of(base, trained_on(spec.teach), report, spec.run_id,
                          spec.created_at)
    return None


def repeated_refusal(home: HearthHome, corrections: CorrectionStore,
                     versions: VersionStore, base: str) -> Refusal | None:
    """The refusal a Teach of ``base`` would repeat now (its corrections unchanged since
    the refused run); None when Teach may run. ``hearth teach`` asks this once."""
    refusal = last_refusal(home, base)
    if refusal is None or not refusal.still_applies(corrections_for(corrections, versions,
                                                                    base)):
        return None
    return refusal


class Refusals:
    """Per base, the last teach run the gate refused: remembered through the session,
    and read back once from the run folders (so a restart does not forget it). The
    window asks on every refresh, so the run folders are read only once per base."""

    def __init__(self, home: HearthHome, corrections: CorrectionStore,
                 versions: VersionStore) -> None:
        self.home, self.corrections, self.versions = home, corrections, versions
        self._by_base: dict[str, Refusal] = {}
        self._read_back: set[str] = set()

    def record(self, base: str, trained: Snapshot, report: GateReport,
               run_id: str = "") -> None:
        self._read_back.add(base)
        self._by_base[base] = Refusal.of(base, trained, report, run_id)

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
                corrections_for(self.corrections, self.versions, base)):
            return None
        return refusal
