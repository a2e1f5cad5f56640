"""Runs that share an output name never share files (issue 11 F6)."""

from __future__ import annotations

import json
from pathlib import Path

from app.finetune.datasets import load_dataset
from app.finetune.runs.delete import delete_run, run_files
from app.finetune.runs.folder import create_run
from app.finetune.settings import ExportSettings, LoraSettings
from app.models.provenance import Provenance
from app.workspace import Workspace
from tests.finetune_fixtures import fact_rows, write_jsonl
from tests.gguf_factory import write_tiny_gguf


def test_two_runs_with_one_output_name_get_their_own_files(workspace: Workspace,
                                                            tmp_path: Path) -> None:
    base = workspace.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "base")
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    export = ExportSettings(out_name="my-helper")
    old = create_run(workspace.home, base, dataset, LoraSettings(), export)
    new = create_run(workspace.home, base, dataset, LoraSettings(), export)
    old_files = run_files(workspace.home, workspace.library, old)
    new_files = run_files(workspace.home, workspace.library, new)
    assert old_files.gguf != new_files.gguf
    assert old_files.gguf_f16 != new_files.gguf_f16
    assert old_files.adapter != new_files.adapter

    # The new run finished: its model is exported and registered.
    write_tiny_gguf(new_files.gguf, seed=3)
    model = workspace.library.register(new_files.gguf, "my-helper", source="finetune",
                                       provenance=Provenance(run_id=new))
    write_tiny_gguf(old_files.gguf, seed=4)  # the old run's own export
    delete_run(workspace.home, workspace.library, old)
    assert new_files.gguf.exists()
    assert workspace.library.get(model.name).path == new_files.gguf
    assert not old_files.gguf.exists()


def test_deleting_a_legacy_run_never_takes_another_runs_model(workspace: Workspace,
                                                             tmp_path: Path) -> None:
    """Runs created before the fix share one path; the model registered for the newer
    run is kept when the older run is deleted."""
    base = workspace.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "base")
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    old = create_run(workspace.home, base, dataset, LoraSettings(), ExportSettings())
    new = create_run(workspace.home, base, dataset, LoraSettings(), ExportSettings())
    shared = workspace.home.models / "shared.q4_k_m.gguf"
    for run_id in (old, new):  # what create_run used to write: one path for both
        spec_path = workspace.home.runs / run_id / "run.json"
        spec = json.loads(spec_path.read_text())
        spec["output_gguf"] = str(shared)
        spec_path.write_text(json.dumps(spec))
    write_tiny_gguf(shared)
    workspace.library.register(shared, "shared", source="finetune",
                               provenance=Provenance(run_id=new))
    removed = delete_run(workspace.home, workspace.library, old)
    assert shared.exists() and shared not in removed
    assert workspace.library.get("shared").path == shared
