"""The gate's verdict on measured answers: the counts, the reasons and the culprits.

The training worker measures (``backends/training/teach_gate.py``: the taught model's
free-running answers beside the base's, each judged by :mod:`app.teach.judge`); the
verdict is only arithmetic on what it measured, against :class:`GateLimits`, so it lives
here, where it is tested without a model.
"""

from __future__ import annotations

from app.teach import judge
from app.teach.limits import GateLimits
from app.teach.records import CaseResult, CaseSource, GateReport, HarmedAnswer, HarmKind


def _culprits(cases: list[CaseResult], harmed: list[HarmedAnswer]
              ) -> dict[tuple[CaseSource, int | None], str]:
    """The corrections a harmed answer points to ((source, id): how to name it): the one
    whose words leaked into it, or the refusals taught where the harm is new refusals."""
    named: dict[tuple[CaseSource, int | None], str] = {}
    for h in harmed:
        for c in cases:
            key = judge.distinctive(c.chosen, "", c.question)
            leaked = judge.leak(h.base, h.answer, [key]) is not None
            refusal = h.why == "now refuses" and judge.is_refusal(c.chosen)
            if leaked or refusal:
                named.setdefault((c.source, c.id), f"{c.source} {c.id} (“{c.question[:50]}”)")
    return named


def _missed(cases: list[CaseResult]) -> str:
    """The first few questions not answered as corrected, quoted."""
    missed = [c.question[:50] for c in cases if not c.learned][:3]
    return "; ".join(f"“{m}”" for m in missed)


def verdict(cases: list[CaseResult], harmed: list[HarmedAnswer], general_total: int,
            limits: GateLimits, measured: dict[str, float] | None) -> GateReport:
    """The counts, the reasons (naming the corrections at fault) and whether it passed."""
    earlier = [c for c in cases if c.source == CaseSource.EARLIER]
    kept_earlier = sum(c.learned for c in earlier)
    stops = sum(c.stops for c in cases)
    cases = [c for c in cases if c.source != CaseSource.EARLIER]
    total = len(cases)
    learned = sum(c.learned for c in cases)
    paras = [p for c in cases for p in c.paraphrases]
    neighbours = [n for c in cases for n in c.neighbours]
    kept = sum(n.kept for n in neighbours)
    general_changed = sum(h.kind == HarmKind.GENERAL for h in harmed)
    reasons = []
    if total and learned < limits.min_learned * total:
        reasons.append(f"learned only {learned} of {total} corrections (at least "
                       f"{limits.min_learned:.0%} needed; not learned: {_missed(cases)})")
    if earlier and kept_earlier < limits.min_earlier_kept * len(earlier):
        reasons.append(f"forgot earlier corrections: {kept_earlier} of {len(earlier)} "
                       f"still answered (at least {limits.min_earlier_kept:.0%}; forgotten: "
                       f"{_missed(earlier)})")
    if stops < limits.min_stops * (total + len(earlier)):
        reasons.append(f"{total + len(earlier) - stops} taught answers do not end (they "
                       "repeat or run on)")
    if neighbours and kept < limits.min_neighbours_kept * len(neighbours):
        reasons.append(f"neighbouring questions changed: kept {kept} of {len(neighbours)} "
                       f"(at least {limits.min_neighbours_kept:.0%} needed)")
    if general_total and general_changed > limits.max_general_changed * general_total:
        reasons.append(f"{general_changed} of {general_total} everyday answers changed "
                       f"(at most {limits.max_general_changed:.0%})")
    culprits = _culprits(cases, harmed) if reasons and harmed else {}
    if culprits:
        reasons.append("caused by " + ", ".join(list(culprits.values())[:5])
                       + ": remove or reword them, then teach again")
    report = GateReport(
        learned=learned, total=total, stops=stops, earlier_kept=kept_earlier,
        earlier_total=len(earlier), reworded=sum(p.carried for p in paras),
        paraphrases=len(paras), neighbours_kept=kept, neighbours_total=len(neighbours),
        general_changed=general_changed, general_total=general_total, limits=limits,
        passed=not reasons, reasons=reasons, culprits=list(culprits.values()),
        culprit_ids=[ident for (source, ident) in culprits
                     if source == CaseSource.CORRECTION and ident is not None],
        harmed=harmed, cases=cases + earlier)
    if measured is not None:
        report.drift = round(measured["changed"], 5)
        report.nll = round(measured["nll"], 5)
        report.drift_positions = int(measured["positions"])
    return report
