"""A bf16 run computes what plain autocast computes, without its per-call casts, and the
dtype is chosen by a measured training step, not by a matmul alone."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from app.finetune.settings import LoraSettings
from backends.training.batching import pack
from backends.training.data import Tokenized
from backends.training.dtype_probe import MIN_SPEEDUP, choose_dtype
from backends.training.precision import ATTENTION
from backends.training.trainer import Trainer
from tests.finetune_fixtures import tiny_lora_llama

CPU = torch.device("cpu")


def _trainer(tmp_path: Path) -> Trainer:
    model = tiny_lora_llama(hidden=64)
    g = torch.Generator().manual_seed(1)
    records = [Tokenized(ids=torch.randint(0, 128, (n,), generator=g).tolist(),
                         target=[i >= n // 2 for i in range(n)], line=1) for n in (9, 14, 6, 11)]
    settings = LoraSettings(rank=4, alpha=8, max_steps=2, batch_size=2, max_seq_len=64,
                            eval_every=10, checkpoint_every=10)
    return Trainer(model, records, records[:2], settings, tmp_path, emit=lambda e: None,
                   cancel=threading.Event(), device=CPU)


def _loss_and_grads(trainer: Trainer, batch: object) -> tuple[torch.Tensor, dict]:
    loss = trainer.batch_loss_sum(batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.params.items()}
    trainer.model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_bf16_with_weights_cast_once_matches_plain_autocast(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    base = trainer.model.get_base_model()
    assert base.config._attn_implementation == ATTENTION  # fp32 attention on a CPU
    batch = pack(trainer.train_records[:2])
    trainer.autocast_dtype = torch.bfloat16
    fast_loss, fast = _loss_and_grads(trainer, batch)
    layers = [m for m in trainer.model.modules() if hasattr(m, "_hearth_low")]
    assert layers and all(m._hearth_low.dtype == torch.bfloat16 for m in layers)
    # The same step under plain autocast: no cast copies, bf16 attention.
    trainer.release_casts()
    base.set_attn_implementation("sdpa")
    trainer._cast = (torch.bfloat16, trainer.head.weight)  # keep _autocast from casting
    plain_loss, plain = _loss_and_grads(trainer, batch)
    assert all(m._hearth_low is None for m in layers)
    torch.testing.assert_close(fast_loss, plain_loss, rtol=2e-2, atol=0)
    for name, grad in plain.items():
        cos = torch.nn.functional.cosine_similarity(fast[name].flatten(), grad.flatten(), 0)
        assert cos > 0.98, (name, float(cos))
    # fp32 ignores the casts: the exact weights, as the merge and the export read them.
    trainer._cast = None
    trainer.autocast_dtype = None
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_a_run_frees_its_casts_and_the_weights_stay_fp32(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    trainer.autocast_dtype = torch.bfloat16
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
              if not p.requires_grad}
    assert trainer.run() == "finished"
    assert trainer._cast is None
    assert all(getattr(m, "_hearth_low", None) is None for m in trainer.model.modules())
    for name, p in trainer.model.named_parameters():
        if not p.requires_grad:
            assert p.dtype == torch.float32 and torch.equal(p, before[name])


def test_step_speed_leaves_no_trace(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    weights = {n: p.detach().clone() for n, p in trainer.params.items()}
    rng = torch.get_rng_state()
    for dtype in (None, torch.bfloat16):
        assert trainer.step_speed(dtype) > 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert trainer.autocast_dtype is None
    assert all(p.grad is None for p in trainer.params.values())
    assert all(torch.equal(p, weights[n]) for n, p in trainer.params.items())


def test_a_training_step_that_bf16_does_not_speed_up_keeps_fp32() -> None:
    """Matmuls may be faster in bf16 while a whole step is not: the step decides."""
    calls: list[object] = []

    def step_speed(dtype: torch.dtype | None) -> float:
        calls.append(dtype)
        return 100.0  # the same speed both ways

    choice = choose_dtype(CPU, hidden=1024, intermediate=2816, step_speed=step_speed,
                          val_loss=lambda dtype: 2.0)
    if choice.bf16_gflops / choice.fp32_gflops < MIN_SPEEDUP:
        assert calls == []  # bf16 matmuls are not faster here: no step is timed
        return
    assert calls == [None, torch.bfloat16] * 2  # alternating, best of two each
    assert choice.dtype == "float32" and "training step" in choice.reason
    assert choice.fp32_step_tokens_per_s == choice.bf16_step_tokens_per_s == 100.0

    def faster(dtype: torch.dtype | None) -> float:
        return 100.0 if dtype is None else 250.0

    choice = choose_dtype(CPU, hidden=1024, intermediate=2816, step_speed=faster,
                          val_loss=lambda dtype: 2.0)
    assert choice.dtype == "bfloat16" and "training step at 2.5x" in choice.reason
