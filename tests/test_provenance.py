"""The library's provenance as a record: rows written when it was a plain JSON object
still load, what is stored is only the source's own fields, and a row that cannot be
read costs its provenance, never the model."""

from __future__ import annotations

import json
from pathlib import Path

from app.finetune.settings import LoraSettings
from app.models.identity import Identity
from app.models.provenance import Provenance, RunMetrics
from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf

# A fine-tune's provenance as Hearth stored it before it was typed (issue 25).
OLD_ROW = {
    "run_id": "20250101-120000-abcd", "base_model": "tiny", "base_path": "/m/tiny.gguf",
    "dataset": "/d/facts.jsonl", "dataset_sha256": "ab" * 32,
    "settings": {"rank": 4, "alpha": 8, "learning_rate": 0.001, "max_steps": 6},
    "quant": "adapter", "adapter_dir": "/h/adapters/r", "adapter_gguf": "/h/adapters/r/a.gguf",
    "metrics": {"val_loss": 1.2, "final_train_loss": 0.9, "tokens_per_s": 400.0,
                "train_seconds": 12.5, "steps": 6},
    "fidelity": {"logits_max_abs_diff": 0.01, "logits_ref_max_abs": 12.0,
                 "top1_agreement": 1.0, "tokens_compared": 64, "torch_val_loss": 1.2,
                 "gguf_val_loss": 1.21, "quant": "adapter", "warnings": [], "failed": []},
    "date": "2025-01-01T12:30:00+00:00",
    "base_identity": {"size": 123, "fingerprint": "f" * 64, "sha256": None},
    "live_only": True, "a_key_from_the_future": 1,
}


def _store(workspace: Workspace, tmp_path: Path, provenance: object) -> str:
    record = workspace.library.register(write_tiny_gguf(tmp_path / "m.gguf"), "m")
    workspace.library.conn.execute("UPDATE models SET provenance = ? WHERE name = ?",
                                   (json.dumps(provenance), record.name))
    return record.name


def test_an_old_fine_tune_row_loads_as_its_types(workspace: Workspace,
                                                 tmp_path: Path) -> None:
    record = workspace.library.get(_store(workspace, tmp_path, OLD_ROW))
    p = record.provenance
    assert record.live_only and p.run_id == OLD_ROW["run_id"] and p.quant == "adapter"
    assert p.base_identity == Identity(123, "f" * 64, None)
    assert p.settings is not None and p.settings.rank == 4
    assert p.metrics == RunMetrics(1.2, 0.9, 400.0, 12.5, 6)
    assert p.fidelity is not None and p.fidelity.tokens_compared == 64


def test_only_the_sources_own_fields_are_stored(workspace: Workspace,
                                                tmp_path: Path) -> None:
    record = workspace.library.register(write_tiny_gguf(tmp_path / "m.gguf"), "m",
                                        provenance=Provenance(run_id="r", quant="q8_0",
                                                              settings=LoraSettings(rank=4)))
    row = workspace.library.conn.execute("SELECT provenance FROM models WHERE name = 'm'"
                                         ).fetchone()
    stored = json.loads(row["provenance"])
    assert set(stored) == {"run_id", "quant", "settings"} and stored["settings"]["rank"] == 4
    assert workspace.library.get("m").provenance == record.provenance


def test_a_row_that_cannot_be_read_keeps_its_model(workspace: Workspace,
                                                   tmp_path: Path) -> None:
    name = _store(workspace, tmp_path, {"run_id": 7, "live_only": "yes"})
    assert [r.name for r in workspace.library.list()] == [name]
    assert workspace.library.get(name).provenance == Provenance()
