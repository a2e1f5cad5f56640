"""``hearth teach`` before training: it says how long the run will take, and it does not
repeat a run the gate refused while the corrections are unchanged; it names the
corrections at fault and ``--remove`` deletes them. The worker is replaced: nothing here
trains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.chat.corrections import CorrectionStore
from app.cli import teach as teach_cli
from app.cli.main import build_parser
from app.errors import ExitCode
from app.finetune import protocol as tp
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSummary
from app.teach.limits import GateLimits
from app.teach.records import CaseResult, GateReport, HarmedAnswer, HarmKind
from app.teach.run import start_teach
from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf

QUESTIONS = (("What is the capital of Zorbania?", "Quillport is the capital."),
             ("Who invented the glimmerphone?", "Odessa Fernwick invented it."))


class FakeClient:
    """A training worker that is cancelled as soon as it starts."""

    started: list[str] = []

    def __init__(self, home: Any, run_id: str) -> None:
        self.run_id = run_id

    def start(self) -> None:
        FakeClient.started.append(self.run_id)

    def events(self) -> Iterator[Any]:
        yield tp.Cancelled(step=0, checkpoint="")

    def wait(self) -> None:
        pass

    def cancel(self) -> None:
        pass


@pytest.fixture
def tiny(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> tuple[Workspace, list[int]]:
    workspace.library.register(write_tiny_gguf(tmp_path / "tiny.gguf"), "tiny")
    corrections = CorrectionStore(workspace.library.conn)
    ids = []
    for q, a in QUESTIONS:
        conv = workspace.store.create(model="tiny")
        workspace.store.add_message(conv.id, "user", q)
        wrong = workspace.store.add_message(conv.id, "assistant", "I don't know.")
        ids.append(corrections.add_from_conversation(workspace.store, wrong.id, a).id)
    FakeClient.started = []
    monkeypatch.setattr(teach_cli, "TrainingClient", FakeClient)
    return workspace, ids


def _hearth_teach(ws: Workspace, *argv: str) -> int:
    return teach_cli.teach(ws, build_parser().parse_args(["teach", "-m", "tiny", *argv]))


def _refuse_last_run(ws: Workspace, culprit: int) -> str:
    """A teach run folder as the worker leaves one the gate refused, blaming ``culprit``."""
    plan = start_teach(ws.home, ws.library, CorrectionStore(ws.library.conn),
                       ws.library.get("tiny"))
    folder = RunFolder.of(ws.home, plan.run_id)
    folder.write_state(status="refused", step=12, total_steps=12)
    report = GateReport(passed=False, learned=2, total=2,
                        reasons=["everyday answers changed 5 of 12 (at most 2)",
                                 f"caused by correction {culprit} (“{QUESTIONS[1][0]}”)"],
                        culprits=[f"correction {culprit} (“{QUESTIONS[1][0]}”)"],
                        culprit_ids=[culprit])
    folder.write_summary(RunSummary(run_id=plan.run_id, teach=report, steps=12))
    return plan.run_id


def test_a_refused_run_is_not_repeated_and_its_culprits_are_named(
        tiny: tuple[Workspace, list[int]], capsys: pytest.CaptureFixture[str]) -> None:
    ws, (first, second) = tiny
    refused = _refuse_last_run(ws, second)
    runs = sorted(p.name for p in ws.home.runs.iterdir())

    assert _hearth_teach(ws) == ExitCode.REJECTED
    err = capsys.readouterr().err
    assert refused in err and "everyday answers changed 5 of 12" in err
    assert "Nothing changed since" in err and "nothing was trained" in err
    assert QUESTIONS[1][0] in err and QUESTIONS[0][0] not in err  # only the culprit
    assert f"hearth teach -m tiny --remove {second}" in err and "Datasets tab" in err
    assert FakeClient.started == [] and sorted(p.name for p in ws.home.runs.iterdir()) == runs

    assert _hearth_teach(ws, "--json") == ExitCode.REJECTED
    out = json.loads(capsys.readouterr().out)
    assert out["repeats_refused_run"] == refused and out["culprit_ids"] == [second]

    # Removing what the gate named is a change: Teach runs again, and says how long first.
    assert _hearth_teach(ws, "--remove", str(second)) == ExitCode.OK
    assert "Removed correction" in capsys.readouterr().out
    assert [ex.id for ex in CorrectionStore(ws.library.conn).list()] == [first]
    assert _hearth_teach(ws) == ExitCode.CANCELLED  # the stand-in worker stops at once
    err = capsys.readouterr().err
    assert "About " in err and "for 1 correction on this computer" in err
    assert len(FakeClient.started) == 1


def test_a_reworded_correction_may_be_taught_again(
        tiny: tuple[Workspace, list[int]], capsys: pytest.CaptureFixture[str]) -> None:
    ws, (first, second) = tiny
    _refuse_last_run(ws, second)
    CorrectionStore(ws.library.conn).update(second, "The glimmerphone: Odessa Fernwick.")
    assert _hearth_teach(ws) == ExitCode.CANCELLED
    assert len(FakeClient.started) == 1


def test_remove_refuses_ids_that_are_not_this_models_corrections(
        tiny: tuple[Workspace, list[int]], capsys: pytest.CaptureFixture[str]) -> None:
    ws, ids = tiny
    assert _hearth_teach(ws, "--remove", f"{ids[0]},999") == ExitCode.BAD_INPUT
    assert "no correction 999" in capsys.readouterr().err
    assert _hearth_teach(ws, "--remove", "two") == ExitCode.BAD_INPUT
    assert [ex.id for ex in CorrectionStore(ws.library.conn).list()] == ids


DOCUMENTED = {"learned", "total", "reworded", "paraphrases", "neighbours_kept",
              "neighbours_total", "general_changed", "general_total", "stops", "passed",
              "accepted", "reasons", "culprits", "harmed", "limits", "drift", "nll",
              "version", "cases"}
"""The keys docs/teach.md promises in ``hearth teach --json``."""


def test_json_prints_the_documented_keys_of_the_gates_report(
        tiny: tuple[Workspace, list[int]], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _ = tiny
    report = GateReport(learned=1, total=2, reworded=3, paraphrases=4, neighbours_kept=2,
                        neighbours_total=4, general_changed=20, general_total=120, stops=2,
                        reasons=["20 of 120 everyday answers changed (at most 12%)"],
                        harmed=[HarmedAnswer(HarmKind.GENERAL, "How do I boil an egg?",
                                             "Put it in boiling water.", "I cannot.",
                                             "now refuses")],
                        cases=[CaseResult(id=1, question=QUESTIONS[0][0], answer="Quillport.",
                                          learned=True)])

    class Finishing(FakeClient):
        def events(self) -> Iterator[Any]:
            yield tp.Finished(RunSummary(run_id=self.run_id, teach=report, steps=3))

    monkeypatch.setattr(teach_cli, "TrainingClient", Finishing)
    assert _hearth_teach(ws, "--json") == ExitCode.REJECTED
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= DOCUMENTED, DOCUMENTED - set(out)
    assert (out["general_changed"], out["general_total"], out["reworded"]) == (20, 120, 3)
    assert out["generalized"] == 3 and not out["passed"] and not out["accepted"]
    assert out["harmed"] == [{"kind": "general", "prompt": "How do I boil an egg?",
                              "base": "Put it in boiling water.", "answer": "I cannot.",
                              "why": "now refuses"}]
    assert out["cases"][0]["question"] == QUESTIONS[0][0] and out["cases"][0]["learned"]
    assert out["limits"] == GateLimits().to_json() and out["drift"] is None
