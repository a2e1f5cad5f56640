"""Teach's records are types at every boundary: run.json's cases, the gate's report in
summary.json and the worker's Finished event, and a version in versions.json. Files that
Hearth wrote when they were plain JSON objects still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.finetune import protocol as tp
from app.finetune.runs.records import RunSpec, RunSummary
from app.finetune.settings import LoraSettings
from app.paths import HearthHome
from app.teach.continuing import same_shape
from app.teach.limits import GateLimits
from app.teach.records import (
    CaseResult,
    CaseSource,
    GateReport,
    GeneralPrompt,
    HarmedAnswer,
    HarmKind,
    NeighbourAnswer,
    Paraphrase,
    ReferenceCost,
    Reply,
    TeachCase,
)
from app.teach.reference import is_cached, read_sets, write_sets
from app.teach.run import teach_settings
from app.teach.versions import VersionStore

ASK = [{"role": "user", "content": "What is the capital of Velmora?"}]
# Teach's part of a run.json, a summary.json and a versions.json as Hearth wrote them
# while they were dicts (before CaseSource, GateReport; an "earlier" case written before
# replay/check existed; a report before "stops" and with keys no Hearth reads now).
OLD_TEACH = {
    "base": "tiny", "corrections": [3], "extra": None,
    "cases": [{"id": 3, "source": "correction", "prompt": ASK,
               "chosen": "It is Quillport.", "rejected": "I don't know.",
               "variations": [[{"role": "user", "content": "Name the capital of Velmora."}]],
               "rewordings": [[{"role": "user", "content": "Velmora's capital is?"}]],
               "neighbours": ["What is the capital of France?"],
               "rehearse_neighbours": ["What is the capital of Spain?"]},
              {"id": 1, "source": "earlier", "prompt": ASK, "chosen": "Old.",
               "rejected": ""}],
    "check_prompts": [{"prompt": "How do I boil an egg?", "kind": "howto"}],
    "rehearse_prompts": ["Name a colour."],
    "limits": {"min_learned": 0.8, "max_general_changed": 0.125},
    "reference_cache": None,
}
OLD_REPORT = {
    "learned": 1, "total": 1, "generalized": 1, "paraphrases": 1, "reworded": 1,
    "neighbours_kept": 0, "neighbours_total": 1, "general_changed": 1, "general_total": 1,
    "limits": GateLimits().to_json(), "passed": False, "reasons": ["1 of 1 changed"],
    "culprits": ["correction 3 (“What is the capital of Velmora?”)"], "culprit_ids": [3],
    "harmed": [{"kind": "neighbour", "prompt": "What is the capital of France?",
                "base": "Paris.", "answer": "Quillport.", "why": "says “quillport”"}],
    "cases": [{"id": 3, "source": "correction", "question": ASK[0]["content"],
               "chosen": "It is Quillport.", "answer": "It is Quillport.",
               "prefers_chosen": True, "carried": True, "learned": True,
               "paraphrases": [{"prompt": "Velmora's capital is?", "answer": "Quillport.",
                                "carried": True}],
               "neighbours": [{"prompt": "What is the capital of France?", "base": "Paris.",
                               "answer": "Quillport.", "kept": False,
                               "why": "says “quillport”"}]}],
    "drift": 0.012, "kl": 0.5, "drift_positions": 40,
    "general_answers": [{"prompt": "How do I boil an egg?", "kind": "howto",
                         "base": "Boil water.", "stable": False, "answer": "Quillport."}],
    "gate_seconds": 12.5, "reference": {"seconds": 30.0, "cached": False},
}


def test_an_old_teach_run_folder_loads_as_types() -> None:
    spec = RunSpec.from_json({"run_id": "r", "teach": OLD_TEACH})
    teach = spec.teach
    assert teach is not None
    new, earlier = teach.cases
    assert isinstance(new, TeachCase) and new.source == CaseSource.CORRECTION
    assert new.question == ASK[0]["content"] and new.neighbours == OLD_TEACH["cases"][0][
        "neighbours"]
    assert earlier.source == CaseSource.EARLIER and not earlier.replay and not earlier.check
    assert teach.checked_cases == [new] and teach.new_cases == [new]
    assert teach.check_prompts == [GeneralPrompt("How do I boil an egg?", "howto")]
    assert teach.gate_prompts == 1 + 1 + 2 * 1 + 1
    assert teach.limits.min_learned == 0.8 and teach.limits.min_stops == GateLimits().min_stops

    report = RunSummary.from_json({"run_id": "r", "teach": OLD_REPORT}).teach
    assert isinstance(report, GateReport) and not report.passed
    assert report.harmed == [HarmedAnswer(HarmKind.NEIGHBOUR, "What is the capital of "
                                          "France?", "Paris.", "Quillport.",
                                          "says “quillport”")]
    case = report.cases[0]
    assert isinstance(case, CaseResult) and case.stops  # not recorded then: not held against
    assert case.paraphrases == [Paraphrase("Velmora's capital is?", "Quillport.", True)]
    assert case.neighbours[0] == NeighbourAnswer("What is the capital of France?", "Paris.",
                                                 "Quillport.", False, "says “quillport”")
    assert report.general_answers[0].stable is False
    assert report.reference == ReferenceCost(30.0, False) and report.drift == 0.012
    assert report.culprit_ids == [3] and report.limits == GateLimits()


def test_the_report_crosses_the_workers_pipe_and_the_file_unchanged() -> None:
    report = RunSummary.from_json({"run_id": "r", "teach": OLD_REPORT}).teach
    assert report is not None
    summary = RunSummary(run_id="r", teach=report)
    line = tp.encode(tp.Finished(summary))
    again = tp.decode(line).summary
    assert again.teach == report
    written = json.loads(json.dumps(summary.to_json()))
    assert RunSummary.from_json(written).teach == report
    # The file keeps the keys it had (a harm's kind is still the word).
    assert written["teach"]["harmed"][0]["kind"] == "neighbour"
    assert written["teach"]["cases"][0]["source"] == "correction"
    assert written["teach"]["limits"] == GateLimits().to_json()


def test_an_old_versions_file_loads_and_a_round_continues_it(tmp_path: Path) -> None:
    home = HearthHome(tmp_path / "home")
    path = home.root / "teach" / "versions.json"
    path.parent.mkdir(parents=True)
    version = {"name": "tiny-taught-1", "base": "tiny", "run_id": "r",
               "created_at": "2026-12-01T00:00:00+00:00", "corrections": [3], "extra": None,
               "settings": teach_settings().to_json(),
               "report": {k: v for k, v in OLD_REPORT.items()
                          if k not in ("cases", "general_answers")},
               "accepted": True, "continued_from": None}
    path.write_text(json.dumps({"bases": {"tiny": {"active": "tiny-taught-1",
                                                   "versions": [version]}}}))
    notices: list[str] = []
    found = VersionStore(home, notices).versions("tiny")
    assert notices == [] and [v.name for v in found] == ["tiny-taught-1"]
    loaded = found[0]
    assert isinstance(loaded.settings, LoraSettings) and isinstance(loaded.report, GateReport)
    assert loaded.report.general_changed == 1 and loaded.report.cases == []
    assert same_shape(loaded, teach_settings())
    assert not same_shape(loaded, teach_settings().with_overrides(rank=8))


def test_the_reference_cache_reads_what_the_dict_version_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The base's cached answers (minutes on a CPU to make again) survive the change;
    a file that is not what Hearth writes is answered again, not an error."""
    monkeypatch.delenv("HEARTH_CACHE", raising=False)  # else is_cached looks there
    path = tmp_path / "reference.json"
    reply = {"prompt_ids": [1, 2], "reply_ids": [3, 4], "stopped": True, "text": "Paris."}
    path.write_text(json.dumps({"sets": {
        "check": {"prompts": ["Capital of France?"], "kinds": ["fact"], "max_new_tokens": 40,
                  "perturbations": [0.03125, 1, 2, 3], "replies": [{**reply, "stable": False}]},
        "rehearse": {"prompts": ["Name a colour."], "kinds": None, "max_new_tokens": 40,
                     "perturbations": [0.03125, 1, 2, 3], "replies": [reply]}}}))
    sets = read_sets(path)
    assert sets["check"].replies == [Reply([1, 2], [3, 4], True, "Paris.", stable=False)]
    assert sets["rehearse"].replies[0].stable and sets["rehearse"].kinds is None
    assert is_cached(path, ["Capital of France?"], ["Name a colour."])
    assert not is_cached(path, ["Capital of France?"], ["Another prompt."])
    assert is_cached(path, ["Capital of France?"])  # the check set only (Fine-tune's recall)

    write_sets(path, sets)
    assert read_sets(path) == sets
    path.write_text(json.dumps({"sets": {"check": {"prompts": "not a list"}}}))
    assert read_sets(path) == {} and not is_cached(path, ["Capital of France?"])


def test_a_second_run_waits_for_the_first_runs_reference_answers(tmp_path: Path) -> None:
    """Two runs on one base (a fine-tune's recall check beside a Teach; the suite's
    workers) once made the same reference answers side by side, minutes each on a CPU,
    and the last to write dropped the other's sets. The second now waits and reads."""
    import threading
    import time

    from app.teach.reference import ReferenceSet, making, read_sets, write_sets

    cache = tmp_path / "teach" / "base.json"
    order: list[str] = []

    def run(name: str, hold: float) -> None:
        with making(cache):
            order.append(f"{name} in")
            sets = read_sets(cache)
            time.sleep(hold)  # the answers being made
            sets[name] = ReferenceSet([name])
            write_sets(cache, sets)
            order.append(f"{name} out")

    first = threading.Thread(target=run, args=("check", 0.5))
    first.start()
    time.sleep(0.1)
    second = threading.Thread(target=run, args=("rehearse", 0.0))
    second.start()
    first.join()
    second.join()
    assert order == ["check in", "check out", "rehearse in", "rehearse out"]
    assert sorted(read_sets(cache)) == ["check", "rehearse"]  # neither set was lost
