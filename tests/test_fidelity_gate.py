"""The export gate's judgement: numbers in, reasons out (the path through a real run is in
tests/test_finetune_e2e.py)."""

from __future__ import annotations

import pytest

from app.finetune.fidelity import FidelityThresholds, failures
from app.finetune.settings import ExportSettings

GOOD = {"top1_agreement": 1.0, "logits_max_abs_diff": 0.004, "logits_ref_max_abs": 9.0,
        "gguf_val_loss": 1.51}


def test_a_faithful_export_passes() -> None:
    assert failures(GOOD, 1.50, "q8_0") == []


def test_a_broken_export_fails_with_its_numbers() -> None:
    broken = {**GOOD, "top1_agreement": 0.31, "logits_max_abs_diff": 4.2}
    (reason,) = failures(broken, 1.50, "q8_0")
    assert "not the trained model" in reason and "31%" in reason and "46.7%" in reason


def test_a_quantization_that_loses_the_learning_fails_and_names_a_gentler_one() -> None:
    (reason,) = failures({**GOOD, "gguf_val_loss": 2.4}, 1.50, "q4_k_m")
    assert "q4_k_m model lost what was learned" in reason and "q8_0 instead" in reason
    # The allowance grows with the loss: +0.25 + 10 % of 1.5 = 0.40.
    assert failures({**GOOD, "gguf_val_loss": 1.89}, 1.50, "q4_k_m") == []


def test_the_limits_travel_in_the_export_settings() -> None:
    strict = ExportSettings(max_relative_logit_diff=0.0).thresholds()
    assert strict == FidelityThresholds(max_relative_logit_diff=0.0)
    assert failures(GOOD, 1.50, "q8_0", strict)  # F16 rounding alone is over zero
    with pytest.raises(ValueError):
        ExportSettings(min_top1_agreement=1.5)
