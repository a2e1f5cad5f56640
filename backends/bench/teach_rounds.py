"""``hearth bench teach --sequential``: teaching in rounds, as a person keeps correcting.

Round after round, ``round`` new corrections are made in chats (the earlier ones stay in
the store, as they do for a person) and Teach is pressed: each run continues the version
the last accepted round made (:mod:`app.teach.continuing`). A round the gate refuses is
treated as the person would: its corrections are removed, and the next round continues
the last accepted version. After each round the taught adapter answers the round's facts
(efficacy, rewordings, neighbours, as in :func:`backends.bench.teach.score_round`)
and **every** fact accepted in an earlier round, asked in its trained words: the share
still answered is what a person with a long history of corrections relies on. The
round's time (pressing Teach to the verdict) is reported beside the first round's, in
wall seconds and in the process's CPU seconds (the worker runs in this process), which
other work on the machine moves far less than the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.chat.corrections import CorrectionStore
from app.finetune.runs.folder import RunFolder
from app.teach.records import GateReport
from app.teach.versions import Version, VersionStore
from backends.bench.teach import (
    Bench,
    _rate,
    base_reference,
    round_record,
    score_round,
)


def accept(bench: Bench, report: dict[str, Any], round_no: int) -> None:
    """Make the round's adapter the active version, as Accept does. The benchmark exports
    no GGUF, so the version is recorded without a library model (the chat is not used)."""
    spec = RunFolder.of(bench.ws.home, report["run_id"]).spec()
    teach = spec.teach
    assert teach is not None
    VersionStore(bench.ws.home).add(Version(
        name=f"bench-taught-{round_no}", base=teach.base, run_id=report["run_id"],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        corrections=teach.corrections, extra=None, settings=spec.settings,
        report=GateReport.from_json(report).without_answers(),
        continued_from=teach.start_version), activate=True)


def run_rounds(bench: Bench, facts: list[dict[str, Any]], round_size: int,
               say: Any) -> dict[str, Any]:
    base_answers = base_reference(bench, facts)
    store = CorrectionStore(bench.ws.library.conn)
    for ex in store.list():
        store.delete(ex.id)
    known: list[dict[str, Any]] = []
    rounds = []
    for start in range(0, len(facts), round_size):
        chunk = facts[start:start + round_size]
        report = bench.teach([(f["train"][0], base_answers[f["train"][0]], f["answer"])
                              for f in chunk], keep=True)
        if "refused_before_training" in report:
            raise RuntimeError(f"an ordinary round was refused: "
                               f"{report['refused_before_training']}")
        scored = score_round(bench, chunk, base_answers, report, earlier=known)
        rounds.append(round_record(report, scored))
        if report.get("passed"):
            accept(bench, report, len(rounds))
            known.extend(chunk)
        else:
            for ident in report["correction_ids"]:
                store.delete(ident)
        start_of = f"continues {report['continues']}" if report.get("continues") \
            else "from the base"
        say(f"round {len(rounds)} ({start_of}): "
            f"efficacy {scored['efficacy']}/{scored['n']}, earlier still answered "
            f"{scored['earlier_kept']}/{scored['n_earlier']}, neighbours kept "
            f"{scored['neighbours_kept']}/{scored['n_neighbours']}, general changed "
            f"{report.get('general_changed')}/{report.get('general_total')}, gate "
            f"{'passed' if report.get('passed') else 'refused'}, {report['seconds']} s "
            f"({report.get('cpu_seconds')} CPU s, load {report.get('load_average')}), "
            f"{report.get('steps')} steps")
    return summarize_rounds(rounds, len(known))


def summarize_rounds(rounds: list[dict[str, Any]], accepted_facts: int) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(r[key] for r in rounds)

    gates = [r["gate"] for r in rounds]
    seconds = [g["seconds"] for g in gates]
    cpu = [g["cpu_seconds"] for g in gates]
    steps = [g["steps"] or 0 for g in gates]
    last = rounds[-1] if rounds else {"earlier_kept": 0, "n_earlier": 0}
    return {
        "sequential": True, "facts": total("n"), "rounds": len(rounds),
        "accepted_facts": accepted_facts,
        "efficacy": _rate(total("efficacy"), total("n")),
        "reworded": _rate(total("reworded"), total("n_reworded")),
        "neighbour_locality": _rate(total("neighbours_kept"), total("n_neighbours")),
        "earlier_kept": _rate(total("earlier_kept"), total("n_earlier")),
        "earlier_kept_last": _rate(last["earlier_kept"], last["n_earlier"]),
        "general_changed": _rate(sum(g["general_changed"] or 0 for g in gates),
                                 sum(g["general_total"] or 0 for g in gates)),
        "reverse": _rate(total("reverse"), total("n")),
        "stops": _rate(sum(g["stops"] or 0 for g in gates),
                       sum((g["total"] or 0) + (g["earlier_total"] or 0) for g in gates)),
        "gate_passed": sum(bool(g["passed"]) for g in gates),
        "seconds_per_correction": round(sum(seconds) / max(1, total("n")), 1),
        "round_seconds": seconds,
        "slowest_over_first": round(max(seconds) / seconds[0], 2) if seconds else None,
        "round_cpu_seconds": cpu, "round_steps": steps,
        "cpu_slowest_over_first": round(max(cpu) / cpu[0], 2) if cpu else None,
        "details": rounds}
