"""Teaching in rounds: a second Teach continues the active version, trains only what it
does not know yet, replays and re-checks a bounded sample of the rest, and starts from the
version's own LoRA weights (app/teach/continuing.py, backends/training/teach_step.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.chat.corrections import CorrectionStore
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSummary
from app.teach import continuing
from app.teach.records import CaseSource, GateReport, TeachSpec
from app.teach.run import TeachError, start_teach, teach_settings, training_rows
from app.teach.versions import Version, VersionStore
from app.workspace import Workspace, open_workspace
from tests.gguf_factory import write_tiny_gguf


def _correct(ws: Workspace, store: CorrectionStore, n: int, start: int = 0) -> list[int]:
    ids = []
    for i in range(start, start + n):
        conv = ws.store.create(model="base-model")
        ws.store.add_message(conv.id, "user", f"What is the colour of the zorbel number {i}?")
        wrong = ws.store.add_message(conv.id, "assistant", "I don't know.")
        ids.append(store.add_from_conversation(ws.store, wrong.id,
                                               f"Zorbel number {i} is teal{i}.").id)
    return ids


def _accept(ws: Workspace, run_id: str, name: str, adapter: bool = True) -> None:
    """What an accepted run leaves: a summary naming its adapter, and the active version."""
    folder = RunFolder.of(ws.home, run_id)
    spec = folder.spec()
    adapter_dir = folder.path / "adapter"
    if adapter:
        adapter_dir.mkdir()
        (adapter_dir / "adapter_model.safetensors").write_bytes(b"weights")
    folder.write_summary(RunSummary(run_id=run_id, adapter_dir=str(adapter_dir)))
    assert spec.teach is not None
    VersionStore(ws.home).add(Version(
        name=name, base="base-model", run_id=run_id, created_at="9999-12-31T00:00:00+00:00",
        corrections=spec.teach.corrections, extra=None, settings=spec.settings,
        report=GateReport(passed=True)), activate=True)


def _spec(ws: Workspace, run_id: str) -> TeachSpec:
    teach = RunFolder.of(ws.home, run_id).spec().teach
    assert teach is not None
    return teach


def test_a_second_teach_continues_the_active_version(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "home", register_starter=False)
    try:
        base = ws.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "base-model")
        store = CorrectionStore(ws.library.conn)
        first_ids = _correct(ws, store, 3)
        first = start_teach(ws.home, ws.library, store, base)
        assert first.continues is None and _spec(ws, first.run_id).start_from is None
        _accept(ws, first.run_id, "base-model-taught-1")

        with pytest.raises(TeachError, match="already knows every correction"):
            start_teach(ws.home, ws.library, store, base)

        new_ids = _correct(ws, store, 2, start=3)
        second = start_teach(ws.home, ws.library, store, base)
        teach = _spec(ws, second.run_id)
        assert second.continues == "base-model-taught-1"
        assert teach.start_from and teach.start_from.endswith("adapter")
        assert sorted(teach.corrections) == sorted(first_ids + new_ids)  # all it will know
        new = [c for c in teach.cases if c.source == CaseSource.CORRECTION]
        earlier = [c for c in teach.cases if c.source == CaseSource.EARLIER]
        assert [c.id for c in new] == new_ids and len(new[0].variations) >= 4
        assert sorted(c.id for c in earlier) == first_ids
        assert all(c.replay and c.check for c in earlier)
        # The new ones in all their forms, the earlier ones in their own words only.
        rows = training_rows(teach.cases)
        assert len(rows) == sum(1 + len(c.variations) for c in new) + len(earlier)
        assert len(teach.checked_cases) == 5

        # An edited correction is new again: its new answer is trained in every form.
        store.update(first_ids[0], "Zorbel number 0 is crimson.")
        for ex in store.list():  # as if edited after the version was made
            ws.library.conn.execute("UPDATE training_examples SET updated_at = ? WHERE id = ?",
                                    ("9999-12-31T23:59:59+00:00" if ex.id == first_ids[0]
                                     else "2000-01-01T00:00:00+00:00", ex.id))
        third = _spec(ws, start_teach(ws.home, ws.library, store, base).run_id)
        assert first_ids[0] in [c.id for c in third.cases if c.source == CaseSource.CORRECTION]
    finally:
        ws.close()


def test_rounds_stay_bounded_and_other_shapes_start_from_the_base(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "home", register_starter=False)
    try:
        base = ws.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "base-model")
        store = CorrectionStore(ws.library.conn)
        _correct(ws, store, 120)
        plan = start_teach(ws.home, ws.library, store, base)
        _accept(ws, plan.run_id, "base-model-taught-1")
        _correct(ws, store, 10, start=120)
        teach = _spec(ws, start_teach(ws.home, ws.library, store, base).run_id)
        earlier = [c for c in teach.cases if c.source == CaseSource.EARLIER]
        replayed = {c.id for c in earlier if c.replay}
        checked = {c.id for c in earlier if c.check}
        assert len(replayed) == continuing.REPLAYED and len(checked) == continuing.CHECKED
        assert not checked & replayed  # the gate asks what this round did not replay
        assert len(teach.corrections) == 130

        # A different LoRA shape cannot continue: all 130 are taught from the base.
        other = teach_settings().with_overrides(rank=8)
        fresh = _spec(ws, start_teach(ws.home, ws.library, store, base,
                                      settings=other).run_id)
        assert fresh.start_from is None
        assert sum(c.source == CaseSource.CORRECTION for c in fresh.cases) == 130
    finally:
        ws.close()


def test_a_version_whose_adapter_is_gone_is_not_continued(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "home", register_starter=False)
    try:
        base = ws.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "base-model")
        store = CorrectionStore(ws.library.conn)
        _correct(ws, store, 2)
        _accept(ws, start_teach(ws.home, ws.library, store, base).run_id,
                "base-model-taught-1", adapter=False)
        _correct(ws, store, 1, start=2)
        teach = _spec(ws, start_teach(ws.home, ws.library, store, base).run_id)
        assert teach.start_from is None and len(teach.cases) == 3
    finally:
        ws.close()


def test_a_continued_run_starts_from_the_versions_lora_weights(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from backends.training.teach_step import continue_from

    def tiny() -> object:
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2)
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj",
                                                             "down_proj"])
        return get_peft_model(LlamaForCausalLM(config), lora)

    taught = tiny()
    for name, param in taught.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param)  # what training leaves (B starts at zero)
    taught.save_pretrained(str(tmp_path / "adapter"), safe_serialization=True)
    fresh = tiny()
    logs: list[str] = []
    continue_from(fresh, TeachSpec(start_from=str(tmp_path / "adapter"),
                                   start_version="v1"), lambda e: logs.append(e.message))
    mine = dict(fresh.named_parameters())
    for name, param in taught.named_parameters():
        if "lora_" in name:
            assert torch.equal(mine[name], param), name
    assert "Continuing v1" in logs[0]
