"""The training dtype is chosen by measuring this machine, never by its name."""

from __future__ import annotations

import torch

from backends.training.dtype_probe import MAX_LOSS_DRIFT, MIN_SPEEDUP, autocast_dtype, choose_dtype

CPU = torch.device("cpu")


def test_the_choice_follows_the_measured_speeds() -> None:
    losses: list[object] = []

    def val_loss(dtype: torch.dtype | None) -> float:
        losses.append(dtype)
        return 2.0 if dtype is None else 2.01  # 0.5 % apart: within the limit

    choice = choose_dtype(CPU, hidden=1024, intermediate=2816, val_loss=val_loss)
    assert choice.fp32_gflops and choice.bf16_gflops
    faster = choice.bf16_gflops / choice.fp32_gflops >= MIN_SPEEDUP
    assert choice.dtype == ("bfloat16" if faster else "float32"), choice
    assert "bf16" in choice.reason
    if faster:  # the loss check ran, fp32 first
        assert losses == [None, torch.bfloat16]
        assert choice.fp32_val_loss == 2.0 and choice.bf16_val_loss == 2.01


def test_a_loss_that_moves_too_much_keeps_fp32() -> None:
    def val_loss(dtype: torch.dtype | None) -> float:
        return 2.0 if dtype is None else 2.0 * (1 + 3 * MAX_LOSS_DRIFT)

    choice = choose_dtype(CPU, hidden=1024, intermediate=2816, val_loss=val_loss)
    assert choice.dtype == "float32"
    if choice.bf16_val_loss is not None:
        assert "validation loss" in choice.reason


def test_tiny_models_and_forced_runs_are_deterministic() -> None:
    assert choose_dtype(CPU, hidden=32, intermediate=64).dtype == "float32"
    forced = choose_dtype(CPU, hidden=1024, intermediate=2816, forced="bfloat16")
    assert forced.dtype == "bfloat16" and autocast_dtype(forced) is torch.bfloat16
    assert autocast_dtype(choose_dtype(CPU, 1024, 2816, forced="float32")) is None
