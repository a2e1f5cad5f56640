"""Typed runs: the resumable rule, the run folder's records (and old folders), one step
count, and which run is offered for Resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.chat.template import ChatTemplate
from app.codec import RecordError
from app.finetune import protocol as tp
from app.finetune.datasets import load_dataset
from app.finetune.plan import ModelFacts, plan_run, total_steps
from app.finetune.runs.folder import RunFolder, RunInfo, create_run, list_runs, run_info
from app.finetune.runs.records import Fidelity, RunSpec, RunSummary
from app.finetune.runs.reports import MeasuredEstimate
from app.finetune.runs.resume import resume_offer
from app.finetune.runs.status import RunStatus, can_resume
from app.finetune.settings import ExportSettings, LoraSettings
from app.machine.profile import Machine
from app.workspace import Workspace
from backends.training.batching import Plan
from tests.finetune_fixtures import fact_rows, write_jsonl
from tests.gguf_factory import write_tiny_gguf

# A run.json and a summary.json as Hearth wrote them before runs were typed (and before
# cache_dir, the teach section, export.gguf, fidelity_samples and duplicates_dropped),
# with a key no version of Hearth knows.
OLD_SPEC = {
    "run_id": "20250101-120000-abcd", "created_at": "2025-01-01T12:00:00+00:00",
    "base": {"name": "tiny", "path": "/models/tiny.gguf", "source": "imported"},
    "dataset": {"path": "/data/facts.jsonl", "sha256": "ab" * 32, "format": "openai",
                "records": 25, "train_records": 23, "val_records": 2},
    "settings": {"rank": 4, "alpha": 8, "learning_rate": 0.001, "max_steps": 6,
                 "batch_size": 4, "a_setting_from_the_future": 1},
    "export": {"quant": "q8_0", "out_name": None},
    "out_name": "tiny-ft-abcd", "adapter_dir": "/home/adapters/20250101-120000-abcd",
    "output_gguf": "/home/models/tiny-ft-abcd.q8_0.gguf",
    "unknown_section": {"x": 1},
}
OLD_SUMMARY = {
    "run_id": "20250101-120000-abcd", "base_model": OLD_SPEC["base"],
    "dataset": OLD_SPEC["dataset"], "settings": OLD_SPEC["settings"],
    "export": {"quant": "q8_0", "out_name": None}, "device": "cpu", "steps": 6,
    "train_records": 23, "val_records": 2, "train_tokens": 900, "trained_tokens": 5000,
    "truncated_records": 0, "final_train_loss": 1.5, "first_train_loss": 3.0,
    "val_loss": 1.75, "train_seconds": 12.5, "tokens_per_s": 400.0,
    "peak_memory_bytes": 1 << 28,
    "estimate": {"seconds": 20.0, "peak_memory_bytes": 1 << 28, "basis": "formula",
                 "measured": {"seconds": 18.5, "peak_memory_bytes": 1 << 28, "at_step": 3}},
    "dtype": {"dtype": "bfloat16", "reason": "bf16 steps ran 1.6x faster",
              "fp32_gflops": 80.1, "bf16_gflops": 410.0},
    "compiled": {"at_step": 3, "eager_tokens_per_s": 231.4, "remaining_eager_s": 900.0,
                 "compile_s": 61.2, "compiled_tokens_per_s": 316.0, "kept": True,
                 "failed": None},
    "adapter_dir": OLD_SPEC["adapter_dir"], "gguf_path": OLD_SPEC["output_gguf"],
    "fidelity": {"logits_max_abs_diff": 0.01, "logits_ref_max_abs": 12.0,
                 "top1_agreement": 1.0, "tokens_compared": 64, "torch_val_loss": 1.75,
                 "gguf_val_loss": 1.76, "quant": "q8_0", "warnings": []},
}


def _old_run(home_runs: Path, status: str = "finished", checkpoint: bool = True,
             summary: bool = True) -> RunFolder:
    folder = RunFolder(home_runs / OLD_SPEC["run_id"])
    folder.path.mkdir(parents=True)
    folder.spec_file.write_text(json.dumps(OLD_SPEC), "utf-8")
    folder.state_file.write_text(json.dumps({"status": status, "step": 6,
                                             "total_steps": 6}), "utf-8")
    if summary:
        folder.summary_file.write_text(json.dumps(OLD_SUMMARY), "utf-8")
    if checkpoint:
        folder.checkpoints.mkdir()
        folder.latest_checkpoint_file.write_text('{"step": 4, "path": "step-0000004"}')
    return folder


# ----------------------------------------------------------------- the status rule

def test_the_statuses_that_ended_before_finishing_are_the_resumable_ones() -> None:
    resumable = {s for s in RunStatus if s.resumable}
    assert resumable == {RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED}
    assert {s for s in RunStatus if s.active} == {RunStatus.RUNNING, RunStatus.EXPORTING}
    # One rule: ended before finishing AND a checkpoint to continue from.
    assert can_resume(RunStatus.FAILED, has_checkpoint=True)
    assert not can_resume(RunStatus.FAILED, has_checkpoint=False)
    assert not can_resume(RunStatus.FINISHED, has_checkpoint=True)
    assert not can_resume(RunStatus.RUNNING, has_checkpoint=True)
    assert RunStatus.parse("cancelled") is RunStatus.CANCELLED
    assert RunStatus.parse("paused-by-a-newer-hearth") is RunStatus.CREATED
    assert RunStatus.CANCELLED == "cancelled"  # JSON and plain-string callers agree


def test_a_worker_that_died_without_saying_so_leaves_its_run_interrupted(
        tmp_path: Path) -> None:
    folder = _old_run(tmp_path / "runs", status="running", summary=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder.write_state(pid=dead.pid)
    assert folder.state().status is RunStatus.RUNNING  # what the file says...
    assert folder.status() is RunStatus.INTERRUPTED  # ...and what it means
    assert folder.resumable()
    folder.latest_checkpoint_file.unlink()
    assert not folder.resumable()  # nothing to continue from


# ----------------------------------------------------------------- the run folder

def test_a_new_run_folder_round_trips_its_records(workspace: Workspace,
                                                  tmp_path: Path) -> None:
    base = workspace.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "base")
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    settings = LoraSettings(rank=4, alpha=8, max_steps=6, batch_size=4)
    run_id = create_run(workspace.home, base, dataset, settings,
                        ExportSettings(quant="q4_k_m", out_name="helper"))
    folder = RunFolder.of(workspace.home, run_id)
    spec = folder.spec()
    assert spec.run_id == run_id and spec.base.name == "base"
    assert spec.settings == settings and spec.export.quant == "q4_k_m"
    assert spec.dataset.records == 25 and spec.dataset.name == "facts.jsonl"
    assert spec.gguf.name == f"helper.{run_id}.q4_k_m.gguf"
    assert spec.gguf_f16.name == f"helper.{run_id}.q4_k_m.f16.gguf"
    assert RunSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert "teach" not in json.loads(folder.spec_file.read_text())  # as plain runs were
    assert folder.state().status is RunStatus.CREATED and folder.summary() is None
    assert len(folder.train_file.read_text().splitlines()) == spec.dataset.train_records

    folder.write_state(RunStatus.CANCELLED, step=3, total_steps=6)
    folder.write_state(step=4)  # merged, not replaced
    state = folder.state()
    assert (state.status, state.step, state.total_steps) == (RunStatus.CANCELLED, 4, 6)
    assert state.updated_at

    summary = RunSummary(run_id=run_id, base_model=spec.base, dataset=spec.dataset,
                         settings=settings, export=spec.export, steps=6, val_loss=1.25,
                         fidelity=Fidelity(top1_agreement=0.97, warnings=["w"]))
    folder.write_summary(summary)
    assert folder.summary() == summary
    event = tp.decode(tp.encode(tp.Finished(summary)))  # the same record on the wire
    assert isinstance(event.summary, RunSummary) and event.summary == summary

    with folder.events_file.open("w") as fh:
        fh.write(tp.encode(tp.Checkpointed(2, "step-2")) + "\n{cut short by a cra\n")
        fh.write(tp.encode(tp.Evaluation(2, 1.5)) + "\n")
    assert [type(e) for e in folder.events()] == [tp.Checkpointed, tp.Evaluation]


def test_an_old_run_folder_still_loads(tmp_path: Path) -> None:
    folder = _old_run(tmp_path / "runs")
    spec = folder.spec()
    assert spec.run_id == OLD_SPEC["run_id"] and spec.cache_dir == ""
    assert spec.teach is None and spec.export.gguf and spec.export.fidelity_samples == 4
    assert spec.settings.rank == 4 and spec.settings.max_steps == 6
    assert spec.dataset.duplicates_dropped == 0 and spec.dataset.train_records == 23
    summary = folder.summary()
    assert summary is not None and summary.val_loss == 1.75
    assert summary.fidelity is not None and summary.fidelity.val_records == 0
    assert summary.estimate.measured == MeasuredEstimate(18.5, 1 << 28, 3)
    assert summary.dtype is not None and summary.dtype.dtype == "bfloat16"
    assert summary.dtype.bf16_step_tokens_per_s is None and summary.phase_seconds == {}
    assert summary.compiled is not None and summary.compiled.kept
    assert summary.compiled.line() == ("kept: 316 tokens/s compiled against 231 eager, "
                                       "compiling took 61 s")
    assert summary.total_seconds is None and summary.teach is None
    info = run_info(folder)
    assert (info.status, info.step, info.total_steps) == (RunStatus.FINISHED, 6, 6)
    assert info.val_loss == 1.75 and info.gguf_path == OLD_SPEC["output_gguf"]
    assert not info.resumable and info.dataset == "facts.jsonl"


def test_a_broken_run_file_is_refused_with_its_reason_and_skipped_in_lists(
        tmp_path: Path) -> None:
    from app.paths import HearthHome

    home = HearthHome(tmp_path)
    folder = _old_run(home.runs, summary=False)
    assert [r.run_id for r in list_runs(home)] == [OLD_SPEC["run_id"]]
    folder.summary_file.write_text('{"run_id": ', "utf-8")  # cut short
    assert folder.summary() is None
    folder.spec_file.write_text('["not", "a", "run"]', "utf-8")
    with pytest.raises(ValueError, match="run.json cannot be read"):
        folder.spec()
    assert list_runs(home) == []
    with pytest.raises(RecordError, match="'run_id' is missing"):
        RunSpec.from_json({"created_at": "today"})
    # A value of another type than its field's is refused, however deep it sits.
    with pytest.raises(RecordError, match="steps: expected int, got a string"):
        RunSummary.from_json({**OLD_SUMMARY, "steps": "6"})
    with pytest.raises(RecordError, match="CompileReport.kept: expected bool"):
        RunSummary.from_json({**OLD_SUMMARY, "compiled": {"kept": "yes"}})
    with pytest.raises(RecordError, match="expected str, got null"):
        RunSummary.from_json({**OLD_SUMMARY, "device": None})


# -------------------------------------------------------------------- step count

@pytest.mark.parametrize("settings", [
    LoraSettings(epochs=3, batch_size=4, grad_accumulation=1, max_steps=None),
    LoraSettings(epochs=2.5, batch_size=3, grad_accumulation=4, max_steps=None),
    LoraSettings(epochs=1, batch_size=8, grad_accumulation=3, max_steps=None),
    LoraSettings(epochs=0.3, batch_size=1, grad_accumulation=1, max_steps=None),
    LoraSettings(epochs=3, batch_size=4, max_steps=17),
])
def test_the_plan_and_the_trainer_count_the_same_steps(tmp_path: Path,
                                                       settings: LoraSettings) -> None:
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    facts = ModelFacts(template=ChatTemplate.from_metadata(None), vocab=256,
                       parameters=1_000_000, hidden=64, layers=2)
    plan = plan_run(facts, dataset, settings, Machine.detect())
    assert plan.total_steps == Plan(plan.train_records, settings).total_steps
    assert plan.total_steps == total_steps(plan.train_records, settings)
    for n in range(1, 60):  # and for every record count the worker may end up with
        assert Plan(n, settings).total_steps == total_steps(n, settings)


# ------------------------------------------------------------- the resume offer

def _info(run_id: str, status: RunStatus, resumable: bool = True) -> RunInfo:
    return RunInfo(run_id=run_id, status=status, base_model="tiny", out_name="out",
                   dataset="d.jsonl", step=3, total_steps=10, created_at="",
                   resumable=resumable)


def test_resume_is_offered_for_a_crash_or_a_close_never_for_a_chosen_stop() -> None:
    crashed = _info("20250101-1", RunStatus.INTERRUPTED)
    cancelled = _info("20250101-2", RunStatus.CANCELLED)
    failed = _info("20250101-3", RunStatus.FAILED)
    done = _info("20250101-4", RunStatus.FINISHED, resumable=False)
    assert resume_offer([cancelled, failed, done], closed_run=None) is None
    offer = resume_offer([crashed, cancelled, done], closed_run=None)
    assert offer is not None and offer.run is crashed and not offer.closed
    assert offer.how == "was interrupted" and offer.where == "at step 3 of 10"
    # The run the window's close stopped looks cancelled; it is offered (newest first).
    offer = resume_offer([crashed, cancelled], closed_run=cancelled.run_id)
    assert offer is not None and offer.run is cancelled and offer.closed
    assert offer.how == "was stopped when Hearth closed"
    # Nothing to continue from: not offered, whatever happened.
    lost = _info("20250101-5", RunStatus.INTERRUPTED, resumable=False)
    assert resume_offer([lost], closed_run=lost.run_id) is None


def test_the_cli_and_the_history_resume_by_the_same_rule(qtbot, workspace: Workspace,
                                                         tmp_path: Path) -> None:
    """A failed run without a checkpoint is refused by both; with one, both offer it."""
    import os

    from ui.finetune.run_history import RunHistoryView

    base = workspace.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "base")
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    run_id = create_run(workspace.home, base, dataset, LoraSettings(max_steps=6))
    folder = RunFolder.of(workspace.home, run_id)
    folder.write_state(status="failed", error="the model cannot be loaded")
    env = dict(os.environ, HEARTH_HOME=str(workspace.home.root))

    def hearth(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app.cli.main", *args], env=env,
                              cwd=Path(__file__).resolve().parent.parent,
                              capture_output=True, text=True, timeout=120, check=False)

    refused = hearth("finetune", "--resume", run_id)
    assert refused.returncode == 2, refused.stderr
    assert f"run {run_id} is failed and has no checkpoint yet" in refused.stderr
    view = RunHistoryView(workspace.home, workspace.library)
    qtbot.addWidget(view)
    view.select(run_id)
    assert not view.resume_button.isEnabled()
    assert "the model cannot be loaded" in view.details.toPlainText()

    folder.checkpoints.mkdir()
    folder.latest_checkpoint_file.write_text('{"step": 4, "path": "step-0000004"}')
    listed = json.loads(hearth("runs", "list", "--json").stdout)
    assert [(r["status"], r["resumable"]) for r in listed] == [("failed", True)]
    view.refresh()
    view.select(run_id)
    assert view.resume_button.isEnabled()
