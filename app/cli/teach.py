"""``hearth teach``: the corrections collected in chat, taught and checked.

Accepts by itself when the gate passes (``--no-accept`` only reports) and never when it
fails. It says first how long the run will take (:mod:`app.teach.estimate`), and it does
not repeat a run the gate refused while the corrections are unchanged
(:mod:`app.teach.refusal`): it names the corrections at fault, which ``--remove ID[,ID]``
deletes. ``--versions`` lists a base model's versions and ``--use NAME|base`` makes one of
them (or the plain base) the one the chat uses: that is rolling back. A version is an
adapter applied live; ``--merge NAME`` makes it a stand-alone GGUF.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from app.chat.corrections import CorrectionStore, TrainingExample
from app.cli.common import pick_model
from app.cli.run_loop import follow_run
from app.errors import ExitCode
from app.finetune.client import TrainingClient
from app.finetune.datasets import DatasetError, load_dataset
from app.finetune.runs.records import RunSummary
from app.models.library import LibraryError
from app.teach.estimate import estimate_run
from app.teach.records import GateReport
from app.teach.refusal import Refusal, question, repeated_refusal
from app.teach.run import (
    TeachError,
    corrections_for,
    describe,
    keep_result,
    report_lines,
    start_teach,
    teach_settings,
)
from app.teach.versions import Version, VersionStore
from app.units import count
from app.workspace import Workspace


def add_parser(sub: Any) -> None:
    teach = sub.add_parser("teach", help="teach a model the corrections made in chat, "
                           "check it (learned / kept), and use it in chat if it passes")
    teach.add_argument("-m", "--model", help="base model (default: the starter model)")
    teach.add_argument("--extra", metavar="DATA", help="more training data (any dataset "
                       "format); its chat records are checked like corrections")
    teach.add_argument("--json", action="store_true", help="print the report as JSON")
    teach.add_argument("--no-accept", action="store_true",
                       help="only report; keep the chat on its current version")
    teach.add_argument("--versions", action="store_true",
                       help="list the base model's taught versions and which is active")
    teach.add_argument("--use", metavar="VERSION", help="make VERSION the one the chat "
                       "uses; 'base' rolls back to the plain base model")
    teach.add_argument("--merge", metavar="VERSION", help="merge VERSION (an adapter "
                       "applied live) into a stand-alone GGUF, checked like an export")
    teach.add_argument("--remove", metavar="ID[,ID]", help="delete these corrections "
                       "(the ids a refused Teach names) before teaching again")
    teach.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    teach.add_argument("--epochs", type=float, help=argparse.SUPPRESS)


def teach(ws: Workspace, args: argparse.Namespace) -> int:
    versions = VersionStore(ws.home)
    record = pick_model(ws, args.model)
    base = versions.base_name(record.name)
    if args.versions:
        return _list_versions(versions, base, args.json)
    if args.merge:
        return _merge(ws, args.merge)
    if args.use:
        try:
            versions.activate(base, None if args.use == "base" else args.use)
        except ValueError as exc:
            print(f"hearth: {exc}", file=sys.stderr)
            return ExitCode.BAD_INPUT
        print(f"{base}: the chat now uses {args.use if args.use != 'base' else 'the base'}")
        return ExitCode.OK
    if args.remove:
        return _remove(ws, versions, base, args.remove)
    return _teach(ws, versions, base, args)


def _teach(ws: Workspace, versions: VersionStore, base: str, args: argparse.Namespace
           ) -> int:
    """Teach ``base`` its corrections: unless that would repeat a refused run, say how
    long it will take, run the worker, and report."""
    corrections = CorrectionStore(ws.library.conn)
    tuned = bool(args.lr or args.epochs)
    if not args.extra and not tuned:  # other data or settings make another run
        refusal = repeated_refusal(ws.home, corrections, versions, base)
        if refusal is not None:
            return _refused_again(refusal, corrections, versions, args.json)
    extra = None
    try:
        if args.extra:
            extra = load_dataset(args.extra)
        settings = None
        if tuned:
            settings = teach_settings().with_overrides(learning_rate=args.lr,
                                                       epochs=args.epochs)
        record = ws.library.get(base)
        plan = start_teach(ws.home, ws.library, corrections, record, extra, settings)
    except (TeachError, DatasetError, ValueError) as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", ExitCode.BAD_INPUT)
    on_top = f", on top of {plan.continues}" if plan.continues else ""
    print(f"Teaching {base} {count(plan.cases, 'correction')}{on_top} (run {plan.run_id})",
          file=sys.stderr)
    with contextlib.suppress(OSError, ValueError):  # a figure, not a reason to stop
        print(estimate_run(ws.home, plan.run_id, record).sentence(), file=sys.stderr)
    return follow_run(TrainingClient(ws.home, plan.run_id),
                      lambda summary: _finish(ws, summary, args),
                      lambda _event: "Teach was cancelled; nothing changed in the chat.")


def _line(ex: TrainingExample, width: int = 70) -> str:
    return f"  correction {ex.id}: {question(ex)[:width]} → {ex.shown[:width]}"


def _refused_again(refusal: Refusal, corrections: CorrectionStore, versions: VersionStore,
                   as_json: bool) -> int:
    """The last Teach of this base was refused and its corrections have not changed:
    training them again would make the same model (fixed seeds), refused the same way.
    Say so, name the corrections the gate blamed and how to remove or reword them."""
    named = refusal.named(corrections, versions)
    if as_json:
        print(json.dumps({"repeats_refused_run": refusal.run_id, "passed": False,
                          "reasons": refusal.reasons, "culprits": refusal.culprits,
                          "culprit_ids": [ex.id for ex in named]}, indent=2))
        return ExitCode.REJECTED
    why = "; ".join(refusal.reasons) or "its report gives no reason"
    print(f"hearth: the gate refused the last Teach of {refusal.base} (run "
          f"{refusal.run_id}): {why}.\nNothing changed since: the same corrections would "
          "make the same model and be refused the same way, so nothing was trained.",
          file=sys.stderr)
    shown = named or corrections_for(corrections, versions, refusal.base)
    print("The gate named these corrections:" if named else
          "The gate named no single correction; the corrections are:", file=sys.stderr)
    for ex in shown[:20]:
        print(_line(ex), file=sys.stderr)
    if len(shown) > 20:
        print(f"  ... and {len(shown) - 20} more", file=sys.stderr)
    ids = ",".join(str(ex.id) for ex in named) or "ID[,ID]"
    print(f"Remove {'them' if named else 'the ones at fault'} with 'hearth teach -m "
          f"{refusal.base} --remove {ids}', or reword them in the window (Datasets tab: "
          "select the correction, edit the corrected reply, Save changes; the Teach "
          "panel's \"Remove the corrections that caused it\" removes them too); then "
          "teach again.", file=sys.stderr)
    return ExitCode.REJECTED


def _remove(ws: Workspace, versions: VersionStore, base: str, ids_text: str) -> int:
    """``--remove ID[,ID]``: delete corrections of ``base`` (those a refusal named)."""
    corrections = CorrectionStore(ws.library.conn)
    try:
        ids = [int(part) for part in ids_text.split(",") if part.strip()]
    except ValueError:
        ids = []
    if not ids:
        print(f"hearth: --remove takes correction ids, e.g. --remove 2,5 (not {ids_text!r})",
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    mine = {ex.id: ex for ex in corrections_for(corrections, versions, base)}
    unknown = [str(i) for i in ids if i not in mine]
    if unknown:
        print(f"hearth: {base} has no correction {', '.join(unknown)}; nothing was removed",
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    for ident in dict.fromkeys(ids):
        corrections.delete(ident)
        print(f"Removed{_line(mine[ident]).removeprefix(' ')}")
    left = len(mine) - len(set(ids))
    print(f"{base}: {count(left, 'correction')} left; teach "
          f"{'it' if left == 1 else 'them'} with 'hearth teach -m {base}'")
    return ExitCode.OK


REPORT_KEYS = ("learned", "total", "reworded", "paraphrases", "neighbours_kept",
               "neighbours_total", "general_changed", "general_total", "stops", "passed",
               "reasons", "culprits", "harmed", "limits", "drift", "nll")
"""The gate report's part of ``--json`` (docs/teach.md lists them)."""


def report_json(summary: RunSummary, accepted: bool, version: Version | None
                ) -> dict[str, Any]:
    """What ``hearth teach --json`` prints for a finished run: the report's keys, then
    what became of it and its times."""
    report = (summary.teach or GateReport()).to_json()
    measured = summary.estimate.measured
    out = {key: report[key] for key in REPORT_KEYS}
    out.update(generalized=out["reworded"],  # the first name of "reworded", still printed
               accepted=accepted, version=version.name if version else None,
               run_id=summary.run_id, total_seconds=summary.total_seconds,
               estimate_seconds=summary.estimate.seconds,
               measured_estimate_seconds=measured.seconds if measured else None,
               phase_seconds=summary.phase_seconds, cases=report["cases"])
    return out


def _finish(ws: Workspace, summary: RunSummary, args: argparse.Namespace) -> int:
    report = summary.teach or GateReport(reasons=["the run ended without a report"])
    accept = report.passed and not args.no_accept
    version = keep_result(ws.home, ws.library, summary, accept=accept)
    if args.json:
        print(json.dumps(report_json(summary, accept, version), indent=2))
        return ExitCode.OK if report.passed else ExitCode.REJECTED
    print(describe(report))
    for line in report_lines(report):
        print(line)
    if accept:
        print(f"Accepted: chatting with {summary.base_model.name} now answers with "
              f"{version.name if version else '?'} (roll back: hearth teach --use base)")
    elif report.passed:
        print(f"Not accepted (--no-accept); use it with: hearth teach --use "
              f"{version.name if version else '?'}")
    return ExitCode.OK if report.passed else ExitCode.REJECTED


def _list_versions(versions: VersionStore, base: str, as_json: bool) -> int:
    found = versions.versions(base)
    active = versions.active(base)
    if as_json:
        print(json.dumps({"base": base, "active": active,
                          "versions": [v.to_json() for v in found]}, indent=2))
        return ExitCode.OK
    print(f"{base}: {'base model' if active is None else active} is active")
    for v in found:
        r = v.report
        print(f"  {'*' if v.name == active else ' '} {v.name:40} {v.created_at}  learned "
              f"{r.learned}/{r.total}, everyday answers changed "
              f"{r.general_changed}/{r.general_total}, {len(v.corrections)} corrections")
    return ExitCode.OK


def _merge(ws: Workspace, name: str) -> int:
    from app.finetune.merge import MergeError, merge_version

    print(f"Merging {name} into the weights and checking it with llama.cpp…", file=sys.stderr)
    try:
        record = merge_version(ws.home, ws.library, name)
    except (MergeError, LibraryError) as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(f"{record.name} is now a stand-alone model: {record.path}")
    return ExitCode.OK
