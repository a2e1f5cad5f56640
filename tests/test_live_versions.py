"""A result kept as a live adapter (what Teach versions are): checked by llama.cpp with
the adapter on the base, registered without a merged file, served live, refused where a
whole model file is needed, and merged into a stand-alone GGUF with one call."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.finetune.settings import ExportSettings
from app.models.provenance import Provenance
from tests.finetune_fixtures import run_tiny


def test_a_live_result_is_checked_served_live_and_merged_on_demand(
        tmp_path: Path, tiny_gguf, hearth_cache) -> None:
    from app.finetune import protocol as tp
    from app.finetune.datasets import load_dataset
    from app.finetune.merge import MergeError, merge_version
    from app.finetune.runs.folder import RunFolder, create_run
    from app.finetune.runs.results import adopt_result
    from app.finetune.settings import LoraSettings
    from app.inference.protocol import SamplingParams
    from app.models.architectures import UnsupportedArchitecture
    from app.models.handoff import HandoffError, HandoffFormat, export_model
    from app.models.library import LibraryError
    from app.models.live import plan_load
    from app.workspace import open_workspace
    from tests.finetune_fixtures import fact_rows, write_jsonl

    ws = open_workspace(tmp_path / "home", register_starter=False)
    try:
        base = ws.library.register(tiny_gguf, "tiny")
        events = run_tiny(ws, base, tmp_path, ExportSettings(out_name="tiny-live", live=True,
                                                             fidelity_samples=1))
        assert isinstance(events[-1], tp.Finished), events[-3:]
        phases = [e.name for e in events if isinstance(e, tp.Phase)]
        assert "merging" not in phases and "quantizing" not in phases
        summary = events[-1].summary
        assert summary.gguf_path is None and summary.model_file == summary.adapter_gguf
        assert summary.fidelity is not None and summary.fidelity.quant == "adapter"
        assert not summary.fidelity.failed and summary.fidelity.top1_agreement >= 0.9

        record = adopt_result(ws.library, ws.home, summary).model
        assert record is not None and record.provenance.live_only
        assert record.path == Path(summary.adapter_gguf).resolve()
        assert record.info.n_layers == base.info.n_layers  # the base's figures
        plan = plan_load(record, ws.library, None)
        assert (plan.path, plan.adapter) == (base.path, summary.adapter_gguf)
        with pytest.raises(HandoffError, match="merge it first"):
            export_model(record, tmp_path / "out", HandoffFormat.GGUF, SamplingParams())
        with pytest.raises(UnsupportedArchitecture, match="not a model of its own"):
            create_run(ws.home, record, load_dataset(write_jsonl(
                tmp_path / "more.jsonl", fact_rows())), LoraSettings(max_steps=1))

        run_id = summary.run_id
        merged = merge_version(ws.home, ws.library, "tiny-live")
        assert not merged.provenance.live_only and merged.path.suffix == ".gguf"
        assert merged.path != record.path and merged.path.is_file()
        assert merged.provenance.quant == "q8_0"
        assert merged.provenance.fidelity is not None and not merged.provenance.fidelity.failed
        assert RunFolder.of(ws.home, run_id).summary().gguf_path == str(merged.path)
        out = export_model(merged, tmp_path / "out", HandoffFormat.GGUF, SamplingParams())
        assert out.files[0].stat().st_size == merged.path.stat().st_size
        with pytest.raises(MergeError, match="nothing to merge"):
            merge_version(ws.home, ws.library, "tiny-live")
        # The adapter is kept: chat still switches to it live while the base is loaded.
        assert plan_load(merged, ws.library, str(base.path)).switch_only

        # Without its base a live-only version cannot be served, and says so.
        again = adopt_result(ws.library, ws.home, summary)  # already registered: same
        assert again.model is not None and again.model.name == "tiny-live"
        ws.library.remove("tiny")
        live_only = ws.library.register_adapter(summary.adapter_gguf, merged, "orphan",
                                                Provenance(base_model="tiny", run_id=run_id))
        with pytest.raises(LibraryError, match="no longer in the library"):
            plan_load(live_only, ws.library, None)
    finally:
        ws.close()
