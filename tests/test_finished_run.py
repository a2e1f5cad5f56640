"""One rule for a finished run's model, whoever sees the run end: a Teach run resumed with
``hearth finetune --resume`` (or in the Fine-tune tab) becomes a version of its base that
the chat does not use yet, registered once. The worker is replaced: nothing trains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from app.chat.corrections import CorrectionStore
from app.cli import finetune as finetune_cli
from app.cli.main import build_parser
from app.errors import ExitCode
from app.finetune import protocol as tp
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSummary
from app.finetune.runs.status import RunStatus
from app.finished_run import adopt_run
from app.teach.run import start_teach
from app.teach.versions import VersionStore
from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf


def _interrupted_teach_run(ws: Workspace, tmp_path: Path) -> str:
    """A Teach run stopped after a checkpoint, as ``hearth teach`` leaves one on Ctrl+C."""
    ws.library.register(write_tiny_gguf(tmp_path / "tiny.gguf"), "tiny")
    corrections = CorrectionStore(ws.library.conn)
    conv = ws.store.create(model="tiny")
    ws.store.add_message(conv.id, "user", "What is the capital of Zorbania?")
    wrong = ws.store.add_message(conv.id, "assistant", "I don't know.")
    corrections.add_from_conversation(ws.store, wrong.id, "Quillport is the capital.")
    plan = start_teach(ws.home, ws.library, corrections, ws.library.get("tiny"))
    folder = RunFolder.of(ws.home, plan.run_id)
    folder.write_state(status=RunStatus.INTERRUPTED, step=4, total_steps=12)
    folder.latest_checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
    folder.latest_checkpoint_file.write_text(json.dumps({"step": 4, "path": "step-4"}))
    return plan.run_id


def _finished(ws: Workspace, run_id: str, tmp_path: Path) -> RunSummary:
    """The summary the worker sends when the resumed run ends and its gate passes."""
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"GGUF adapter")
    spec = RunFolder.of(ws.home, run_id).spec()
    return RunSummary.from_json({
        "run_id": run_id, "export": asdict(spec.export), "adapter_gguf": str(adapter),
        "fidelity": {"quant": "adapter", "top1_agreement": 1.0},
        "teach": {"passed": True, "learned": 1, "total": 1}})


class FinishingClient:
    """A training worker that finishes the resumed run at once."""

    summary: RunSummary | None = None

    def __init__(self, home: Any, run_id: str) -> None:
        self.run_id = run_id

    def start(self) -> None:
        pass

    def events(self) -> Iterator[Any]:
        assert FinishingClient.summary is not None
        yield tp.Finished(summary=FinishingClient.summary)

    def wait(self) -> None:
        pass

    def cancel(self) -> None:
        pass


def test_a_teach_run_resumed_by_finetune_becomes_an_unused_version(
        workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ws = workspace
    run_id = _interrupted_teach_run(ws, tmp_path)
    FinishingClient.summary = _finished(ws, run_id, tmp_path)
    monkeypatch.setattr(finetune_cli, "TrainingClient", FinishingClient)
    args = build_parser().parse_args(["finetune", "--resume", run_id])
    assert finetune_cli.finetune(ws, args) == ExitCode.OK
    versions = VersionStore(ws.home)
    [version] = versions.versions("tiny")
    assert version.run_id == run_id and ws.library.get(version.name).provenance.live_only
    assert versions.active("tiny") is None  # kept, not made the chat's model
    assert f"hearth teach --use {version.name}" in capsys.readouterr().err
    # The window seeing the same end (or a replayed Finished) registers nothing more.
    again = adopt_run(ws.library, ws.home, FinishingClient.summary)
    assert again.model is not None and again.model.name == version.name
    assert [v.name for v in versions.versions("tiny")] == [version.name]
    assert [r.name for r in ws.library.list()] == ["tiny", version.name]
