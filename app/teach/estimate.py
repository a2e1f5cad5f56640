"""How long a Teach takes on this computer: said before it starts, kept honest while it runs.

Runs took 8 to 17 minutes while the window still said "about 7 min in all", and nothing
was said before pressing Teach. The figure before Teach is therefore built from this
machine's own finished teach runs of the same base (basis "measured"), each part scaled
by what it grows with:

* training by its rows: each correction in its forms of the question, plus the base's
  answers rehearsed beside them (``summary.train_records`` of the past run);
* the gate by the prompts it replays (:attr:`TeachSpec.gate_prompts`);
* the rehearsal phase by the answers the base writes to each correction's neighbour
  questions, less its reference answers to the everyday prompts, which are cached per
  base file (:mod:`app.teach.reference`) and cost only on a first run;
* the rest (loading, tokenizing, saving, llama.cpp's check of the adapter) as it was.

The last few runs each predict the new one; the middle figure is said, and the spread
when they disagree. Without such a run it is the Fine-tune tab's formula
(:func:`app.finetune.plan.plan_run`) scaled by this machine's recorded speed
(:mod:`app.finetune.phase_times`), and said to be "estimated". The time of the worker's
start (importing torch) is in neither.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.chat.corrections import CorrectionStore
from app.finetune.dataset_records import Example
from app.finetune.datasets import Dataset, DatasetStats
from app.finetune.estimate import before_training_seconds
from app.finetune.phase_times import PhaseTimes, phase_times_file
from app.finetune.plan import ModelFacts, model_facts, plan_run
from app.finetune.runs.folder import RunError, RunFolder
from app.finetune.runs.records import RunSummary
from app.finetune.settings import ExportSettings
from app.machine.profile import Machine
from app.models.library import ModelRecord
from app.paths import HearthHome, is_converted
from app.teach.records import GateReport, TeachSpec
from app.teach.reference import is_cached
from app.teach.refusal import teach_runs
from app.teach.run import TeachError, plan_teach, teach_settings
from app.units import count

GENERATIONS_PER_CHECKED_ANSWER = 4
"""The base answers each everyday check prompt, and each neighbour question the gate
asks, once plus at most once per perturbation (``backends.training.teach_gate.PERTURBATIONS``;
a test holds the two equal): an answer a perturbation changed is not asked again, so
the starter's 120 everyday prompts took 3.6 answers each. The bound is counted; past
runs' measured speeds scale it (:class:`PastRun`)."""
RECENT_RUNS = 3
"""Past runs that predict the next one: enough to see a spread, recent enough to be
this machine as it is now."""
SPREAD = 1.25
"""When the past runs' figures differ by more than this factor, the range is said."""
MEASURED, ESTIMATED = "measured", "estimated"


@dataclass(frozen=True)
class TeachShape:
    """What a teach run does, counted in the units its phases grow with."""

    corrections: int
    """Cases trained afresh (the new corrections, and extra records)."""
    train_rows: int
    """Training records: the corrections in their forms and the rehearsed answers."""
    gate_prompts: int
    neighbour_answers: int
    """Answers the base writes before training to the corrections' neighbour questions."""
    reference_prompts: int
    reference_answers: int
    """Answers the base writes to the everyday prompts when they are not cached."""
    cached: bool
    continues: str | None = None

    @classmethod
    def of(cls, teach: TeachSpec, rows: int, cached: bool) -> TeachShape:
        """The shape of ``teach`` with ``rows`` training rows from start_teach (the
        rehearsed answers are added here, as the worker adds them)."""
        new = teach.new_cases
        rehearsed = sum(len(c.rehearse_neighbours) for c in new)
        per_check = GENERATIONS_PER_CHECKED_ANSWER
        return cls(corrections=len(new),
                   train_rows=rows + len(teach.rehearse_prompts) + rehearsed,
                   gate_prompts=teach.gate_prompts,
                   neighbour_answers=rehearsed + per_check * sum(len(c.neighbours)
                                                                 for c in new),
                   reference_prompts=len(teach.check_prompts) + len(teach.rehearse_prompts),
                   reference_answers=per_check * len(teach.check_prompts)
                   + len(teach.rehearse_prompts),
                   cached=cached, continues=teach.start_version)


def _ratio(new: int, old: int) -> float:
    return new / old if old > 0 else 1.0


@dataclass(frozen=True)
class PastRun:
    """A finished teach run of the base on this machine: its shape and its phase times."""

    run_id: str
    shape: TeachShape
    phases: dict[str, float]
    gate_seconds: float
    reference_seconds: float | None = None
    """What its reference answers took. None: a run from before Hearth measured them,
    whose rehearsal phase counts them (an over-estimate if that run answered afresh)."""

    @property
    def usable(self) -> bool:
        return bool(self.phases.get("training")) and self.shape.train_rows > 0

    @property
    def answer_seconds(self) -> float:
        """Seconds per prompt the gate replayed: this base's speed of answering."""
        return self.gate_seconds / max(1, self.shape.gate_prompts)

    def predict(self, shape: TeachShape) -> float:
        """This run's time scaled to ``shape``, without the reference answers."""
        phases = dict(self.phases)
        training = phases.pop("training", 0.0)
        rehearsing = phases.pop("rehearsing", 0.0) - (self.reference_seconds or 0.0)
        phases.pop("checking", None)
        return (sum(phases.values())
                + max(0.0, rehearsing) * _ratio(shape.neighbour_answers,
                                                self.shape.neighbour_answers)
                + training * _ratio(shape.train_rows, self.shape.train_rows)
                + self.gate_seconds * _ratio(shape.gate_prompts, self.shape.gate_prompts))

    @classmethod
    def of(cls, run_id: str, teach: TeachSpec, summary: RunSummary) -> PastRun:
        report = summary.teach or GateReport()
        reference = report.reference
        phases = {str(k): float(v) for k, v in (summary.phase_seconds or {}).items()}
        gate = float(report.gate_seconds or phases.get("checking") or 0.0)
        shape = replace(TeachShape.of(teach, 0, reference is not None and reference.cached),
                        train_rows=int(summary.train_records or 0))
        return cls(run_id, shape, phases, gate,
                   float(reference.seconds) if reference is not None else None)


@dataclass(frozen=True)
class TeachEstimate:
    """How long a Teach will take, on what basis, and what a first run adds."""

    seconds: float
    basis: str
    """"measured" (this machine's teach runs of the base) or "estimated" (the formula)."""
    shape: TeachShape
    runs: int = 0
    """How many past runs it was measured on."""
    low: float = 0.0
    high: float = 0.0
    reference_seconds: float = 0.0
    """Included in ``seconds``: the base's reference answers, on a first run only."""

    def sentence(self) -> str:
        """What the window shows beside Teach and ``hearth teach`` prints first."""
        new = "new correction" if self.shape.continues else "correction"
        head = f"About {_span(self.low, self.high, self.seconds)} for " \
               f"{count(self.shape.corrections, new)} on this computer"
        if self.basis == MEASURED:
            why = f"measured on your last {count(self.runs, 'teach run')}" \
                if self.runs > 1 else "measured on your last teach run"
        else:
            why = "estimated: no Teach of this model timed here yet"
        if self.reference_seconds:
            why += (f"; a first run: about {rough(self.reference_seconds)} of it is the "
                    f"base model answering {self.shape.reference_prompts} reference "
                    "prompts, once")
        return f"{head} ({why})."


def rough(seconds: float) -> str:
    """A duration as an estimate deserves: whole minutes, seconds only under two."""
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _span(low: float, high: float, middle: float) -> str:
    if low and high > low * SPREAD and rough(low) != rough(high):
        lo, hi = rough(low), rough(high)
        if lo.endswith(" min") and hi.endswith(" min") and "h" not in lo + hi:
            return f"{lo.removesuffix(' min')}–{hi}"
        return f"{lo} to {hi}"
    return rough(middle)


def measured(past: list[PastRun], shape: TeachShape) -> TeachEstimate | None:
    """The estimate from this machine's past runs (newest first); None without any."""
    runs = [r for r in past if r.usable][:RECENT_RUNS]
    if not runs:
        return None
    reference = 0.0
    if not shape.cached:
        fresh = [r.reference_seconds for r in runs
                 if r.reference_seconds is not None and not r.shape.cached]
        reference = (statistics.median(fresh) if fresh else
                     statistics.median(r.answer_seconds for r in runs)
                     * shape.reference_answers)
    figures = sorted(r.predict(shape) + reference for r in runs)
    return TeachEstimate(seconds=statistics.median(figures), basis=MEASURED, shape=shape,
                         runs=len(runs), low=figures[0], high=figures[-1],
                         reference_seconds=reference)


def formula(shape: TeachShape, rows: list[dict[str, Any]], facts: ModelFacts,
            machine: Machine, times: PhaseTimes, converted: bool) -> TeachEstimate:
    """The first-run estimate: the fine-tune formula for loading and training (scaled by
    the speed this machine's last run showed), the gate's recorded rate for answers."""
    source = rows or [{"text": ""}]
    examples = [Example.from_json(source[i % len(source)])
                for i in range(max(2, shape.train_rows))]
    data = Dataset(path=Path("teach.jsonl"), format="openai", sha256="", examples=examples,
                   stats=DatasetStats(len(examples), 0, 0, 0, 0))
    plan = plan_run(facts, data, teach_settings(), machine, export=ExportSettings(live=True),
                    converted=converted)
    fixed = before_training_seconds(facts.parameters, converted)
    training = times.training(max(0.0, plan.estimate.seconds - fixed), machine.likely_dtype)
    answers = times.gate_rate * (shape.gate_prompts + shape.neighbour_answers)
    reference = 0.0 if shape.cached else times.gate_rate * shape.reference_answers
    total = fixed + training + answers + reference
    return TeachEstimate(seconds=total, basis=ESTIMATED, shape=shape, low=total, high=total,
                         reference_seconds=reference)


def past_runs(home: HearthHome, base: str, limit: int = RECENT_RUNS) -> list[PastRun]:
    """The newest finished teach runs of ``base`` (passed or refused), newest first."""
    found: list[PastRun] = []
    for folder, spec in teach_runs(home, base):
        summary = folder.summary()
        if summary is None or summary.teach is None or spec.teach is None:
            continue
        run = PastRun.of(spec.run_id, spec.teach, summary)
        if run.usable:
            found.append(run)
        if len(found) >= limit:
            break
    return found


def estimate_teach(home: HearthHome, teach: TeachSpec, rows: list[dict[str, Any]],
                   base: ModelRecord, machine: Machine | None = None) -> TeachEstimate:
    """How long the teach run ``teach`` (with its training ``rows``) will take here."""
    shape = TeachShape.of(teach, len(rows), is_cached(
        teach.reference_cache, [g.prompt for g in teach.check_prompts],
        teach.rehearse_prompts))
    found = measured(past_runs(home, teach.base), shape)
    if found is not None:
        return found
    machine = machine or Machine.detect()
    times = PhaseTimes.of_machine(phase_times_file(home), machine.has_gpu)
    return formula(shape, rows, model_facts(base), machine, times,
                   is_converted(base.path, home.base_model_cache))


def estimate_run(home: HearthHome, run_id: str, base: ModelRecord,
                 machine: Machine | None = None) -> TeachEstimate:
    """The estimate of a teach run just written (``hearth teach`` prints it first)."""
    folder = RunFolder.of(home, run_id)
    spec = folder.spec()
    if spec.teach is None:
        raise RunError(f"run {run_id} is not a teach run")
    rows = [json.loads(line) for line in folder.train_file.read_text("utf-8").splitlines()
            if line.strip()]
    return estimate_teach(home, spec.teach, rows, base, machine)


def before_teach(home: HearthHome, corrections: CorrectionStore, base: ModelRecord,
                 machine: Machine | None = None) -> TeachEstimate | None:
    """The estimate shown beside Teach: what a Teach of ``base`` would run now, priced;
    None when Teach would not start (no corrections, or a set it refuses)."""
    try:
        teach, rows = plan_teach(home, base, corrections)
    except TeachError:
        return None
    if not rows:
        return None
    return estimate_teach(home, teach, rows, base, machine)


def running_note(estimate_s: float | None, basis: str, elapsed_s: float,
                 training_left_s: float | None = None) -> str:
    """What the window says beside a running Teach's phase, from the clock: the estimate
    and the time left while it holds; once the training's own pace (``training_left_s``,
    from its steps) or the clock passes it, that it is taking longer, and how long so far.
    The estimate said at the start never stays on screen as if it still held."""
    if estimate_s is None or estimate_s <= 0:
        return f"  ({rough(elapsed_s)} so far)" if elapsed_s >= 1 else ""
    label = MEASURED if basis == MEASURED else ESTIMATED
    left = max(estimate_s - elapsed_s, training_left_s or 0.0)
    if elapsed_s > estimate_s:
        tail = f", about {rough(training_left_s)} of training left" \
            if training_left_s else ""
        return (f"  (taking longer than {label} (about {rough(estimate_s)}): "
                f"{rough(elapsed_s)} so far{tail})")
    total = max(estimate_s, elapsed_s + left)  # a slower training moves the end out
    if total > estimate_s * SPREAD:
        return (f"  (longer than {label} (about {rough(estimate_s)}): about "
                f"{rough(left)} left, {rough(elapsed_s)} so far)")
    return f"  ({label}: about {rough(total)} in all, about {rough(left)} left)"
