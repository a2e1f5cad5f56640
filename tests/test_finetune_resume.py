"""A run killed with SIGKILL (and one cancelled) resumes to the uninterrupted result."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import torch
from safetensors.torch import load_file

from app.finetune import protocol as tp
from app.finetune.client import TrainingClient
from app.finetune.datasets import load_dataset
from app.finetune.runs.folder import create_run, list_runs
from app.finetune.settings import ExportSettings, LoraSettings
from app.workspace import open_workspace
from tests.finetune_fixtures import fact_rows, write_jsonl

SETTINGS = LoraSettings(rank=4, alpha=8, dropout=0.1, max_steps=24, batch_size=2,
                        learning_rate=1e-3, checkpoint_every=4, eval_every=8,
                        max_seq_len=128, seed=7)


def _drive(client: TrainingClient, on_event=None) -> list:
    client.start()
    seen = []
    for event in client.events(timeout=600):
        seen.append(event)
        if on_event is not None:
            on_event(client, event)
    client.wait(30)
    return seen


def test_kill_9_then_resume_matches_an_uninterrupted_run(
        tmp_path: Path, tiny_gguf: Path, hearth_cache: Path) -> None:
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
    assert isinstance(events[-1], tp.WorkerDied)
    assert "--resume" in events[-1].message
    state = {r.run_id: r for r in list_runs(ws.home)}[broken]
    assert state.status == "interrupted" and state.step < SETTINGS.max_steps

    def cancel_at_step_14(client: TrainingClient, event: object) -> None:
        if isinstance(event, tp.Progress) and event.step == 14:
            client.cancel()

    events = _drive(TrainingClient(ws.home, broken), cancel_at_step_14)
    assert any(isinstance(e, tp.Log) and "resumed from the checkpoint" in e.message
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


_PARENT = """
import sys, time
from app.paths import resolve_home
from app.finetune.client import TrainingClient
client = TrainingClient(resolve_home(sys.argv[1]), sys.argv[2])
client.start()
print(client.proc.pid, flush=True)
for event in client.events(timeout=600):
    if type(event).__name__ == "Progress" and event.step >= 3:
        print("training", event.step, flush=True)
        break
time.sleep(600)  # stop reading: the app hangs, then is killed
"""


def test_a_worker_whose_app_dies_checkpoints_and_the_run_resumes(
        tmp_path: Path, tiny_gguf: Path, hearth_cache: Path) -> None:
    """Issue 11 F5: the worker died of BrokenPipeError when the app was killed, before
    the checkpoint its docstring promises. No periodic checkpoint falls inside this run,
    so any checkpoint found was written because the parent went away."""
    import subprocess
    import sys

    import psutil

    ws = open_workspace(tmp_path / "home", register_starter=False)
    record = ws.library.register(tiny_gguf, "tiny")
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    settings = LoraSettings(rank=4, alpha=8, dropout=0.1, max_steps=400, batch_size=2,
                            learning_rate=1e-3, checkpoint_every=1000, eval_every=1000,
                            max_seq_len=128, seed=7)
    run_id = create_run(ws.home, record, dataset, settings, ExportSettings(gguf=False))
    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(ws.home.root), run_id],
                              cwd=root, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(root)))
    assert parent.stdout is not None
    worker = psutil.Process(int(parent.stdout.readline()))
    line = parent.stdout.readline()
    assert line.startswith("training"), line
    parent.kill()
    parent.wait(30)
    worker.wait(300)  # it must end by itself, having saved its work

    latest = ws.home.runs / run_id / "checkpoints" / "latest.json"
    assert latest.exists(), (ws.home.runs / run_id / "worker.log").read_text()[-2000:]
    saved_step = json.loads(latest.read_text())["step"]
    assert 3 <= saved_step < settings.max_steps
    state = {r.run_id: r for r in list_runs(ws.home)}[run_id]
    assert state.status == "interrupted" and state.step == saved_step
    events = (ws.home.runs / run_id / "events.jsonl").read_text()
    assert events.splitlines()[-1].endswith('"kind": "cancelled"}')
    log = (ws.home.runs / run_id / "worker.log").read_text()
    assert "BrokenPipeError" not in log and "Traceback" not in log

    resumed: list = []

    def stop_soon(client: TrainingClient, event: object) -> None:
        resumed.append(event)
        if isinstance(event, tp.Progress):
            client.cancel()

    _drive(TrainingClient(ws.home, run_id), stop_soon)
    assert any(isinstance(e, tp.Log)
               and f"resumed from the checkpoint at step {saved_step}" in e.message
               for e in resumed)
    ws.close()
