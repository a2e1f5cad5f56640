"""The export gate's judgement: numbers in, reasons out (the path through a real run is in
tests/test_finetune_e2e.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.finetune.export_check import CheckMeasures
from app.finetune.fidelity import FidelityThresholds, failures
from app.finetune.settings import ExportSettings

GOOD = CheckMeasures(top1_agreement=1.0, logits_max_abs_diff=0.004, logits_ref_max_abs=9.0,
                     gguf_val_loss=1.51)


def test_a_faithful_export_passes() -> None:
    assert failures(GOOD, 1.50, "q8_0") == []


def test_a_broken_export_fails_with_its_numbers() -> None:
    broken = replace(GOOD, top1_agreement=0.31, logits_max_abs_diff=4.2)
    (reason,) = failures(broken, 1.50, "q8_0")
    assert "not the trained model" in reason and "31%" in reason and "46.7%" in reason


def test_a_quantization_that_loses_the_learning_fails_and_names_a_gentler_one() -> None:
    (reason,) = failures(replace(GOOD, gguf_val_loss=2.4), 1.50, "q4_k_m")
    assert "q4_k_m model lost what was learned" in reason and "q8_0 instead" in reason
    # The allowance grows with the loss: +0.25 + 10 % of 1.5 = 0.40.
    assert failures(replace(GOOD, gguf_val_loss=1.89), 1.50, "q4_k_m") == []


def test_a_live_adapter_is_judged_on_top_of_the_quantized_base() -> None:
    """The numbers the Q4_1 starter gave with a short run's adapter and with Teach's: both
    pass. An adapter whose top tokens leave the base's noise, or that loses the learning,
    fails."""
    live = CheckMeasures(top1_agreement=0.91, logits_max_abs_diff=2.488,
                         logits_ref_max_abs=38.07, gguf_val_loss=1.194,
                         base_top1_agreement=1.0, base_logits_max_abs_diff=1.662,
                         top1_within_base_noise=1.0)
    assert failures(live, 1.188, "adapter") == []
    merged = replace(live, base_top1_agreement=None, base_logits_max_abs_diff=None,
                     top1_within_base_noise=None)
    assert failures(merged, 1.188, "adapter")  # judged as a merged file, it would fail
    # Teach's adapter on the starter: the whole-vocabulary largest difference is no
    # measure on a quantized base; top-1 within the base's noise and the loss are.
    teach = replace(live, logits_max_abs_diff=8.105, logits_ref_max_abs=40.92,
                    top1_agreement=0.9717, gguf_val_loss=0.1187)
    assert failures(teach, 0.1202, "adapter") == []
    (reason,) = failures(replace(live, top1_within_base_noise=0.6), 1.188, "adapter")
    assert "not the trained model" in reason and "quantized base alone" in reason
    # A missing or mis-scaled adapter: llama.cpp's loss stays near the untrained one's.
    assert failures(replace(teach, gguf_val_loss=1.83), 0.1202, "adapter")
    (reason,) = failures(replace(live, gguf_val_loss=2.5), 1.188, "adapter")
    assert "applied live on the base, the adapter lost what was learned" in reason


def test_the_limits_travel_in_the_export_settings() -> None:
    strict = ExportSettings(max_relative_logit_diff=0.0).thresholds()
    assert strict == FidelityThresholds(max_relative_logit_diff=0.0)
    assert failures(GOOD, 1.50, "q8_0", strict)  # F16 rounding alone is over zero
    with pytest.raises(ValueError):
        ExportSettings(min_top1_agreement=1.5)


def test_a_run_whose_export_fails_the_gate_is_a_failed_run_that_keeps_its_adapter(
        tmp_path, tiny_gguf, hearth_cache) -> None:
    """A real run on the tiny model, with a limit no F16 export can meet: the run ends
    failed with the numbers, nothing is registered, and the adapter stays (PEFT and the
    llama.cpp GGUF adapter), so no training is lost."""
    from pathlib import Path

    from app.finetune import protocol as tp
    from app.finetune.client import TrainingClient
    from app.finetune.datasets import load_dataset
    from app.finetune.runs.folder import RunFolder, create_run
    from app.finetune.settings import LoraSettings
    from app.workspace import open_workspace
    from tests.finetune_fixtures import fact_rows, write_jsonl

    ws = open_workspace(tmp_path / "home", register_starter=False)
    try:
        record = ws.library.register(tiny_gguf, "tiny")
        dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
        settings = LoraSettings(rank=4, alpha=8, max_steps=4, batch_size=2,
                                learning_rate=1e-3, max_seq_len=128, seed=1)
        run_id = create_run(ws.home, record, dataset, settings,
                            ExportSettings(quant="q8_0", max_relative_logit_diff=0.0,
                                           fidelity_samples=1))
        client = TrainingClient(ws.home, run_id)
        client.start()
        events = list(client.events(timeout=600))
        client.wait(30)
        error = events[-1]
        assert isinstance(error, tp.Error) and error.error_kind == "export_failed", \
            events[-3:]
        assert "not the trained model" in error.message and "at most 0.0% allowed" in error.message
        folder = RunFolder.of(ws.home, run_id)
        assert folder.status() == "failed" and folder.resumable()
        summary = folder.summary()
        assert summary is not None and summary.fidelity.failed and summary.gguf_path is None
        assert [m.name for m in ws.library.list()] == ["tiny"]  # nothing registered
        adapter = Path(summary.adapter_dir)
        assert (adapter / "adapter_model.safetensors").is_file()
        assert (adapter / "adapter.gguf").is_file() and summary.adapter_gguf
        assert not list(ws.home.models.glob("*.gguf"))  # the refused export is gone
    finally:
        ws.close()
