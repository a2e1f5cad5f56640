"""Teach's bookkeeping: which corrections belong to a base, versions, roll back, and the
model the chat answers with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.chat.corrections import CorrectionStore
from app.finetune.teach import (
    DRIFT_LIMIT,
    TeachError,
    Version,
    VersionStore,
    chat_model,
    corrections_for,
    describe,
    general_prompts,
    paraphrases,
    start_teach,
)
from app.workspace import Workspace, open_workspace
from tests.gguf_factory import write_tiny_gguf as write_gguf


def _version(name: str, base: str = "base-model") -> Version:
    return Version(name=name, base=base, run_id="r", created_at="now", corrections=[1],
                   extra=None, settings={}, report={"learned": 1, "total": 1, "drift": 0.01})


def test_versions_activate_and_roll_back(workspace: Workspace, tmp_path: Path) -> None:
    lib = workspace.library
    base = lib.register(write_gguf(tmp_path / "base.gguf"), "base-model")
    v1 = lib.register(write_gguf(tmp_path / "v1.gguf"), "base-model-taught-1")
    lib.register(write_gguf(tmp_path / "v2.gguf"), "base-model-taught-2")
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
        base = ws.library.register(write_gguf(tmp_path / "base.gguf"), "base-model")
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
        train = (run / "data" / "train.jsonl").read_text().splitlines()
        assert len(train) == 3  # no correction is held out: each must be learned
        teach = spec["teach"]
        assert teach["base"] == "base-model" and len(teach["cases"]) == 3
        assert teach["cases"][0]["rejected"] == "I don't know."
        assert len(teach["cases"][0]["paraphrases"]) == 2
        assert teach["drift_limit"] == DRIFT_LIMIT
        assert teach["check_prompts"] == general_prompts()["check"]
        assert not set(teach["check_prompts"]) & set(teach["rehearse_prompts"])
        assert spec["out_name"] == "base-model-taught-1"
    finally:
        ws.close()


def test_paraphrases_reword_the_last_question_only() -> None:
    prompt = [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": "What is X?"}]
    out = paraphrases(prompt)
    assert len(out) == 2 and all(p[0] == prompt[0] for p in out)
    assert {p[-1]["content"] for p in out} == {"Tell me: What is X?",
                                               "Quick question. What is X?"}
    assert len(general_prompts()["check"]) == 50


def test_the_report_reads_in_a_sentence() -> None:
    report = {"learned": 9, "total": 10, "generalized": 25, "paraphrases": 30,
              "drift": 0.012, "drift_limit": 0.1, "passed": True, "reasons": []}
    assert describe(report).startswith("Learned 9 of 10 (reworded questions: 25 of 30); "
                                       "general behaviour changed 1.2%, within the 10% limit")
    failed = dict(report, drift=0.3, passed=False, reasons=["general behaviour changed"])
    assert "over the 10% limit" in describe(failed) and "Not accepted" in describe(failed)


