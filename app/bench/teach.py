"""``hearth bench teach``: the editing benchmark (:mod:`backends.bench.teach`).

Runs as a child (the app never imports torch) in a scratch home, so the person's
corrections, versions and library are never touched; the child's progress lines go to
stderr as they come (a full run takes tens of minutes on two cores).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from app.models.library import ModelRecord
from app.workers.spawn import ROOT, child_env, module_command
from app.workspace import Workspace

TARGETS = {"efficacy": 0.95, "reworded": 0.85, "neighbour_locality": 0.90}
"""The issue's targets (more is better); ``general_changed`` must stay at most 5 %."""
MAX_GENERAL_CHANGED = 0.05


def run_teach_bench(ws: Workspace, record: ModelRecord, *, facts: int, round_size: int,
                    poison: bool, threads: int, sequential: bool = False) -> dict[str, Any]:
    args = ["--model", str(record.path), "--facts", str(facts), "--round", str(round_size),
            "--cache", os.environ.get("HEARTH_CACHE") or str(ws.home.base_model_cache),
            "--threads", str(threads or os.cpu_count() or 1)]
    if not poison:
        args.append("--no-poison")
    if sequential:
        args.append("--sequential")
    out = subprocess.run(module_command("backends.bench.teach", args),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                         env=child_env(), cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError("the teach benchmark failed (its log is above)")
    result: dict[str, Any] = json.loads(out.stdout[out.stdout.index("{"):])
    result["model"] = record.name
    result["summary"] = summary_lines(result)
    return result


def summary_lines(r: dict[str, Any]) -> list[str]:
    def mark(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    lines = [f"{r['model']}: {r['facts']} made-up facts, one correction each, "
             f"{r['round']} per Teach ({r['rounds']} runs"
             + (", each continuing the last accepted version" if r.get("sequential") else "")
             + "), defaults"]
    for key, target in TARGETS.items():
        lines.append(f"  {key:20} {r[key]:6.1%}  target >= {target:.0%} "
                     f"({mark(r[key] >= target)})")
    lines.append(f"  {'general_changed':20} {r['general_changed']:6.1%}  target <= "
                 f"{MAX_GENERAL_CHANGED:.0%} ({mark(r['general_changed'] <= MAX_GENERAL_CHANGED)})")
    lines.append(f"  {'reverse':20} {r['reverse']:6.1%}  (reported)")
    lines.append(f"  {'stops':20} {r['stops']:6.1%}")
    if r.get("sequential"):
        lines.append(f"  {'earlier_kept':20} {r['earlier_kept']:6.1%}  target >= 95% "
                     f"({mark(r['earlier_kept'] >= 0.95)}); after the last round "
                     f"{r['earlier_kept_last']:.1%}")
        lines.append(f"  slowest round {r['slowest_over_first']}x the first (CPU seconds "
                     f"{r['cpu_slowest_over_first']}x; steps {r['round_steps']})  target "
                     f"<= 2x ({mark((r['slowest_over_first'] or 0) <= 2)})")
    lines.append(f"  gate passed {r['gate_passed']} of {r['rounds']} runs; "
                 f"{r['seconds_per_correction']} s per correction; runs took "
                 f"{', '.join(f'{s:.0f}' for s in r['round_seconds'])} s; "
                 f"load average {r['load_average']:.1f}")
    for name, p in (r.get("poison") or {}).items():
        lines.append(f"  poison {name:18} {'refused' if p['refused'] else 'ACCEPTED'}: "
                     f"{p['why'][:150]}")
    return lines
