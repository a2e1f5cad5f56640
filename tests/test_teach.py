"""Teach's bookkeeping: which corrections belong to a base, versions, roll back, and the
model the chat answers with."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from app.chat.corrections import CorrectionStore
from app.finetune.settings import LoraSettings
from app.models.versions import chat_model
from app.teach.limits import GateLimits
from app.teach.probes import general_prompts
from app.teach.records import GateReport, HarmedAnswer, HarmKind
from app.teach.run import TeachError, corrections_for, describe, report_lines, start_teach
from app.teach.versions import Version, VersionStore
from app.workspace import Workspace, open_workspace
from tests.gguf_factory import write_tiny_gguf


def _version(name: str, base: str = "base-model") -> Version:
    return Version(name=name, base=base, run_id="r", created_at="now", corrections=[1],
                   extra=None, settings=LoraSettings(),
                   report=GateReport(learned=1, total=1, drift=0.01))


def test_versions_activate_and_roll_back(workspace: Workspace, tmp_path: Path) -> None:
    lib = workspace.library
    base = lib.register(write_tiny_gguf(tmp_path / "base.gguf"), "base-model")
    v1 = lib.register(write_tiny_gguf(tmp_path / "v1.gguf"), "base-model-taught-1")
    lib.register(write_tiny_gguf(tmp_path / "v2.gguf"), "base-model-taught-2")
    versions = VersionStore(workspace.home)
    assert chat_model(lib, versions, base).name == "base-model"

    versions.add(_version("base-model-taught-1"), activate=True)
    versions.add(_version("base-model-taught-2"), activate=False)  # --no-accept
    assert versions.active("base-model") == "base-model-taught-1"
    assert chat_model(lib, versions, base).name == "base-model-taught-1"
    assert chat_model(lib, versions, base, use_base=True).name == "base-model"  # --base
    assert versions.base_of("base-model-taught-2") == "base-model"

    versions.activate("base-model", "base-model-taught-2")
    assert chat_model(lib, versions, base).name == "base-model-taught-2"
    versions.activate("base-model", None)  # roll back to the base
    assert chat_model(lib, versions, base).name == "base-model"
    versions.activate("base-model", "base-model-taught-1")  # ...or to an earlier version
    assert VersionStore(workspace.home).active("base-model") == v1.name  # persisted
    with pytest.raises(ValueError, match="not a version"):
        versions.activate("base-model", "something-else")

    lib.remove("base-model-taught-1")  # a version deleted from the library: the base
    assert chat_model(lib, versions, base).name == "base-model"


def test_corrections_of_a_base_include_those_made_with_its_versions(
        workspace: Workspace, tmp_path: Path) -> None:
    store = workspace.store
    corrections = CorrectionStore(workspace.library.conn)
    VersionStore(workspace.home).add(_version("base-model-taught-1"), activate=True)
    ids = []
    for model in ("base-model", "base-model-taught-1", "other-model"):
        conv = store.create(model=model)
        store.add_message(conv.id, "user", f"Question for {model}?")
        wrong = store.add_message(conv.id, "assistant", "Wrong.")
        ids.append(corrections.add_from_conversation(store, wrong.id, "Right.").id)
    mine = corrections_for(corrections, VersionStore(workspace.home), "base-model")
    assert [ex.id for ex in mine] == ids[:2]


def test_start_teach_writes_every_correction_and_the_gate_inputs(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "home", register_starter=False)
    try:
        base = ws.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "base-model")
        corrections = CorrectionStore(ws.library.conn)
        with pytest.raises(TeachError, match="no corrections"):
            start_teach(ws.home, ws.library, corrections, base)
        for i in range(3):
            conv = ws.store.create(model="base-model")
            ws.store.add_message(conv.id, "user", f"What is fact {i}?")
            wrong = ws.store.add_message(conv.id, "assistant", "I don't know.")
            corrections.add_from_conversation(ws.store, wrong.id, f"Fact {i} is blue.")
        plan = start_teach(ws.home, ws.library, corrections, base)
        run = ws.home.runs / plan.run_id
        spec = json.loads((run / "run.json").read_text())
        train = [json.loads(line) for line in
                 (run / "data" / "train.jsonl").read_text().splitlines()]
        # No correction is held out (each must be learned), and each is trained in
        # several forms of its question that Hearth wrote itself, all answered as corrected.
        questions = [r["messages"][-2]["content"] for r in train]
        assert "What is fact 0?" in questions and "Do you know what fact 0 is?" in questions
        assert len(train) == 3 * (1 + len(spec["teach"]["cases"][0]["variations"]))
        assert {r["messages"][-1]["content"] for r in train} == {f"Fact {i} is blue."
                                                                 for i in range(3)}
        teach = spec["teach"]
        assert teach["base"] == "base-model" and len(teach["cases"]) == 3
        case = teach["cases"][0]
        assert case["rejected"] == "I don't know."
        # The checked rewordings are never among the trained variations.
        assert len(case["rewordings"]) == 2
        assert not {m[-1]["content"] for m in case["rewordings"]} & set(questions)
        assert teach["limits"] == GateLimits().to_json()
        checked = [g["prompt"] for g in teach["check_prompts"]]
        assert checked == [g.prompt for g in general_prompts()["check"]]
        assert not set(checked) & set(teach["rehearse_prompts"])
        assert spec["out_name"] == "base-model-taught-1"
    finally:
        ws.close()


def test_the_report_reads_in_a_sentence_and_shows_each_change() -> None:
    report = GateReport(learned=9, total=10, reworded=17, paraphrases=20,
                        neighbours_kept=19, neighbours_total=20, general_changed=2,
                        general_total=120, passed=True,
                        harmed=[HarmedAnswer(HarmKind.GENERAL, "How do I boil an egg?",
                                             "Put it in boiling water.",
                                             "I cannot help with that.", "now refuses")])
    assert describe(report) == (
        "Learned 9 of 10; reworded questions 17 of 20; neighbouring questions kept 19 of "
        "20; everyday answers changed 2 of 120. Passed: it can be used in chat.")
    failed = replace(report, passed=False, reasons=["2 of 120 everyday answers changed"])
    assert describe(failed).endswith("Not accepted: 2 of 120 everyday answers changed.")
    lines = "\n".join(report_lines(report))
    assert "base:   Put it in boiling water." in lines
    assert "taught: I cannot help with that." in lines
