"""The estimate before Teach: built from this machine's finished teach runs, scaled by the
corrections, honest about a first run's reference answers; and the time shown while a
run goes. Run summaries are fabricated: nothing here trains, and no test asserts how
long anything really takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.chat.corrections import CorrectionStore, TrainingExample
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSummary
from app.teach.estimate import (
    ESTIMATED,
    GENERATIONS_PER_CHECKED_ANSWER,
    MEASURED,
    RECENT_RUNS,
    PastRun,
    TeachShape,
    before_teach,
    measured,
    running_note,
)
from app.teach.probes import general_prompts
from app.teach.records import CaseSource, GateReport, ReferenceCost, TeachSpec
from app.teach.reference import is_cached
from app.teach.refusal import Refusal
from app.teach.run import make_case, start_teach, training_rows
from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf

PHASES = {"loading": 6.0, "tokenizing": 1.0, "rehearsing": 50.0, "training": 120.0,
          "checking": 40.0, "saving": 1.0, "adapter_check": 5.0}


def _spec(n: int) -> tuple[TeachSpec, int]:
    """A teach run's section of run.json for ``n`` corrections, and its training rows."""
    cases = [make_case([{"role": "user", "content": f"What is the capital of Zorbania {i}?"}],
                       f"Quillport {i} is the capital.", "I don't know.", CaseSource.CORRECTION, i)
             for i in range(n)]
    general = general_prompts()
    spec = TeachSpec(base="tiny", corrections=list(range(n)), cases=cases,
                     check_prompts=list(general["check"]),
                     rehearse_prompts=[p.prompt for p in general["rehearse"]])
    return spec, len(training_rows(cases))


def _shape(n: int, cached: bool = True) -> TeachShape:
    spec, rows = _spec(n)
    return TeachShape.of(spec, rows, cached)


def _past(n: int = 10, speed: float = 1.0, reference: ReferenceCost | None = None,
          run_id: str = "r") -> PastRun:
    """A finished run of ``n`` corrections; ``speed`` 2 took twice as long."""
    spec, _ = _spec(n)
    shape = _shape(n)
    summary = RunSummary(run_id=run_id, train_records=shape.train_rows,
                         phase_seconds={k: v * speed for k, v in PHASES.items()},
                         teach=GateReport(passed=True, gate_seconds=PHASES["checking"] * speed,
                                          reference=reference or ReferenceCost(2.0, True)))
    return PastRun.of(run_id, spec, summary)


def test_the_estimate_scales_with_the_corrections() -> None:
    past = [_past(10)]
    same = measured(past, _shape(10))
    assert same is not None and same.basis == MEASURED and same.runs == 1
    # A run of the same shape predicts its own time (its cached reference answers aside).
    assert same.seconds == pytest.approx(sum(PHASES.values()) - 2.0)
    few, many = measured(past, _shape(5)), measured(past, _shape(20))
    assert few is not None and many is not None
    assert few.seconds < same.seconds < many.seconds
    # What grows with the corrections grows; loading, saving and the check do not.
    fixed = PHASES["loading"] + PHASES["tokenizing"] + PHASES["saving"] \
        + PHASES["adapter_check"]
    assert many.seconds - fixed > 1.5 * (same.seconds - fixed)
    assert "for 20 corrections on this computer" in many.sentence()
    assert "measured on your last teach run" in many.sentence()


def test_the_last_runs_each_predict_and_their_spread_is_said() -> None:
    runs = [_past(10, speed, run_id=str(i)) for i, speed in enumerate((1.0, 3.0, 1.5, 9.0))]
    found = measured(runs, _shape(10))
    assert found is not None and found.runs == RECENT_RUNS  # the oldest is left out
    assert found.low < found.seconds < found.high
    assert "–" in found.sentence() or " to " in found.sentence()
    assert "measured on your last 3 teach runs" in found.sentence()


def test_a_first_run_costs_more_when_the_reference_answers_are_not_cached() -> None:
    past = [_past(10)]
    cached = measured(past, _shape(10, cached=True))
    fresh = measured(past, _shape(10, cached=False))
    assert cached is not None and fresh is not None
    assert cached.reference_seconds == 0 and "reference prompts" not in cached.sentence()
    assert fresh.seconds > cached.seconds and fresh.reference_seconds > 0
    assert "a first run: about" in fresh.sentence()
    assert "the base model answering 160 reference prompts, once" in fresh.sentence()
    # Measured when a past run answered them afresh: that run's own figure is the price.
    answered = _past(10, reference=ReferenceCost(33.0, cached=False))
    priced = measured([answered], _shape(10, cached=False))
    assert priced is not None and priced.reference_seconds == pytest.approx(33.0)


def test_the_count_of_reference_answers_is_the_gates() -> None:
    from backends.training.teach_gate import PERTURBATIONS

    assert 1 + len(PERTURBATIONS) == GENERATIONS_PER_CHECKED_ANSWER


def _tiny_home(workspace: Workspace, tmp_path: Path, n: int = 3) -> CorrectionStore:
    workspace.library.register(write_tiny_gguf(tmp_path / "tiny.gguf"), "tiny")
    corrections = CorrectionStore(workspace.library.conn)
    for i in range(n):
        conv = workspace.store.create(model="tiny")
        workspace.store.add_message(conv.id, "user", f"What is fact {i}?")
        wrong = workspace.store.add_message(conv.id, "assistant", "I don't know.")
        corrections.add_from_conversation(workspace.store, wrong.id, f"Fact {i} is blue.")
    return corrections


def test_a_measured_run_is_preferred_to_the_formula(workspace: Workspace,
                                                    tmp_path: Path) -> None:
    corrections = _tiny_home(workspace, tmp_path)
    base = workspace.library.get("tiny")
    first = before_teach(workspace.home, corrections, base)
    assert first is not None and first.basis == ESTIMATED and first.runs == 0
    assert "estimated" in first.sentence() and "for 3 corrections" in first.sentence()
    # The worker leaves a summary with its phase times: the next estimate is measured.
    plan = start_teach(workspace.home, workspace.library, corrections, base)
    folder = RunFolder.of(workspace.home, plan.run_id)
    folder.write_state(status="finished")
    folder.write_summary(RunSummary(run_id=plan.run_id, train_records=60,
                                    phase_seconds=PHASES,
                                    teach=GateReport(passed=True, gate_seconds=40.0)))
    second = before_teach(workspace.home, corrections, base)
    assert second is not None and second.basis == MEASURED and second.runs == 1
    assert "measured on your last teach run" in second.sentence()


def test_cached_reference_answers_are_recognised(workspace: Workspace, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The home's own cache: a session fixture's HEARTH_CACHE (shared by the workers of
    # other tests) would redirect the look-up there (app.teach.reference.cache_in_use).
    monkeypatch.delenv("HEARTH_CACHE", raising=False)
    corrections = _tiny_home(workspace, tmp_path)
    base = workspace.library.get("tiny")
    fresh = before_teach(workspace.home, corrections, base)
    assert fresh is not None and not fresh.shape.cached and fresh.reference_seconds > 0
    plan = start_teach(workspace.home, workspace.library, corrections, base)
    teach = RunFolder.of(workspace.home, plan.run_id).spec().teach
    assert teach is not None and teach.reference_cache
    check = [g.prompt for g in teach.check_prompts]
    cache = Path(teach.reference_cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"sets": {"check": {"prompts": check},
                                          "rehearse": {"prompts": ["other"]}}}))
    assert not is_cached(cache, check, teach.rehearse_prompts)  # other prompts: answered again
    cache.write_text(json.dumps({"sets": {"check": {"prompts": check},
                                          "rehearse": {"prompts": teach.rehearse_prompts}}}))
    assert is_cached(cache, check, teach.rehearse_prompts)
    again = before_teach(workspace.home, corrections, base)
    assert again is not None and again.shape.cached and again.reference_seconds == 0
    assert again.seconds < fresh.seconds


def test_the_running_time_follows_the_clock() -> None:
    on_time = running_note(420.0, MEASURED, 60.0)
    assert "measured: about" in on_time and "in all" in on_time and "left" in on_time
    slow_training = running_note(420.0, "formula", 120.0, training_left_s=900.0)
    assert "longer than estimated" in slow_training and "in all" not in slow_training
    over = running_note(420.0, MEASURED, 600.0)
    assert "taking longer than measured" in over and "so far" in over
    assert "in all" not in over
    assert "so far" in running_note(None, "", 30.0)


def _example(ident: int, text: str, updated: str) -> TrainingExample:
    return TrainingExample(id=ident, conversation_id=None, model="tiny",
                           messages=[{"role": "user", "content": "Q?"},
                                     {"role": "assistant", "content": text}],
                           rejected="", created_at=updated, updated_at=updated)


def test_a_refused_round_that_continued_a_version_still_applies_until_a_change() -> None:
    """A continued round's run folder holds the text of its new corrections only; the
    earlier ones count as unchanged while not edited after the run."""
    refusal = Refusal.of("tiny", ((1, None), (2, "New answer.")), GateReport(passed=False),
                         "run", created_at="2026-01-02T00:00:00+00:00")
    earlier = _example(1, "Old answer.", "2026-01-01T00:00:00+00:00")
    new = _example(2, "New answer.", "2026-01-01T12:00:00+00:00")
    assert refusal.still_applies([earlier, new])
    assert not refusal.still_applies([earlier])  # one removed
    assert not refusal.still_applies([earlier, _example(2, "Reworded.", new.updated_at)])
    edited = _example(1, "Old answer, edited.", "2026-01-03T00:00:00+00:00")
    assert not refusal.still_applies([edited, new])
