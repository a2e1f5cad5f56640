"""A run killed with SIGKILL (and one cancelled) resumes to the uninterrupted result."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import torch
from safetensors.torch import load_file

from app import train_protocol as tp
from app.datasets import load_dataset
from app.finetune import ExportSettings, LoraSettings
from app.training import TrainingClient, create_run, list_runs
from app.workspace import open_workspace
from tests.finetune_fixtures import fact_rows, hearth_cache, tiny_gguf, write_jsonl  # noqa: F401

SETTINGS = LoraSettings(rank=4, alpha=8, dropout=0.1, max_steps=24, batch_size=2,
                        learning_rate=1e-3, checkpoint_every=4, eval_every=8,
                        max_seq_len=128, seed=7)


def _drive(client: TrainingClient, on_event=None) -> list:  # noqa: ANN001
    client.start()
    seen = []
    for event in client.events(timeout=600):
        seen.append(event)
        if on_event is not None:
            on_event(client, event)
    client.wait(30)
    return seen


def test_kill_9_then_resume_matches_an_uninterrupted_run(
        tmp_path: Path, tiny_gguf: Path, hearth_cache: Path) -> None:  # noqa: F811
    ws = open_workspace(tmp_path / "home", register_starter=False)
    record = ws.library.register(tiny_gguf, "tiny")
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    no_export = ExportSettings(gguf=False)

    straight = create_run(ws.home, record, dataset, SETTINGS, no_export)
    events = _drive(TrainingClient(ws.home, straight))
    assert isinstance(events[-1], tp.Finished), events[-3:]
    expected = load_file(str(ws.home.adapters / straight / "adapter_model.safetensors"))

    broken = create_run(ws.home, record, dataset, SETTINGS, no_export)

    def kill_at_first_checkpoint(client: TrainingClient, event: object) -> None:
        if isinstance(event, tp.Checkpointed):
            os.kill(client.proc.pid, signal.SIGKILL)

    events = _drive(TrainingClient(ws.home, broken), kill_at_first_checkpoint)
    assert isinstance(events[-1], tp.WorkerExited)
    assert "--resume" in events[-1].message
    state = {r.run_id: r for r in list_runs(ws.home)}[broken]
    assert state.status == "interrupted" and state.step < SETTINGS.max_steps

    def cancel_at_step_14(client: TrainingClient, event: object) -> None:
        if isinstance(event, tp.Progress) and event.step == 14:
            client.cancel()

    events = _drive(TrainingClient(ws.home, broken), cancel_at_step_14)
    assert any(isinstance(e, tp.TrainLog) and "resumed from the checkpoint" in e.message
               for e in events)
    cancelled = [e for e in events if isinstance(e, tp.Cancelled)]
    assert cancelled and cancelled[0].step >= 14
    assert {r.run_id: r for r in list_runs(ws.home)}[broken].status == "cancelled"

    events = _drive(TrainingClient(ws.home, broken))
    assert isinstance(events[-1], tp.Finished), events[-3:]
    got = load_file(str(ws.home.adapters / broken / "adapter_model.safetensors"))
    assert got.keys() == expected.keys() and len(got) == 2 * 7 * 2
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])
    # The losses agree as well, not only the end point.
    summary = json.loads((ws.home.runs / broken / "summary.json").read_text())
    reference = json.loads((ws.home.runs / straight / "summary.json").read_text())
    assert summary["steps"] == reference["steps"] == SETTINGS.max_steps
    assert math.isclose(summary["final_train_loss"], reference["final_train_loss"],
                        rel_tol=1e-5)
    assert math.isclose(summary["val_loss"], reference["val_loss"], rel_tol=1e-5)
    ws.close()
