"""torch.compile in the training loop: decided by measurement, verified, and never a
reason for a run to fail (backends/training/compiled.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from app.finetune import protocol as tp
from app.finetune.settings import COMPILE_COST_S, COMPILE_GAIN, LoraSettings, worth_compiling
from backends.training.data import Tokenized
from backends.training.trainer import Trainer
from tests.finetune_fixtures import tiny_lora_llama

CPU = torch.device("cpu")


def _trainer(tmp_path: Path, mode: str, events: list) -> Trainer:
    torch.manual_seed(0)
    model = tiny_lora_llama()
    records = [Tokenized(ids=[(7 * i + j) % 128 for j in range(n)],
                         target=[j >= n // 2 for j in range(n)], line=i)
               for i, n in enumerate((12,) * 8)]  # one shape: one compile
    settings = LoraSettings(rank=4, alpha=8, max_steps=14, batch_size=2, max_seq_len=64,
                            eval_every=5, checkpoint_every=100)
    return Trainer(model, records, records[:2], settings, tmp_path, emit=events.append,
                   cancel=threading.Event(), device=CPU, compile_mode=mode)


def test_compiling_pays_only_for_long_cpu_runs() -> None:
    pays_from = COMPILE_COST_S / (1 - 1 / COMPILE_GAIN)  # eager seconds left, 2 cores
    assert not worth_compiling("cpu", 0.9 * pays_from, cores=2)  # a quick run stays eager
    assert worth_compiling("cpu", 1.1 * pays_from, cores=2)
    assert worth_compiling("cpu", 0.9 * pays_from, cores=8)  # more cores compile sooner
    assert not worth_compiling("cuda", 10 * pays_from, cores=2)  # GPU: not measured, eager


def test_a_compiled_run_trains_like_an_eager_one_and_reports_what_it_measured(
        tmp_path: Path) -> None:
    eager_events: list = []
    eager = _trainer(tmp_path / "eager", "off", eager_events)
    assert eager.run() == "finished" and eager.compiler.report is None
    events: list = []
    compiled = _trainer(tmp_path / "compiled", "on", events)
    assert compiled.run() == "finished"
    report = compiled.compiler.report
    assert report is not None and report.at_step == 3  # after the eager steps measured
    assert report.compile_s is not None and report.compiled_tokens_per_s
    assert report.kept in (True, False) and report.failed is None
    said = [e.message for e in events if isinstance(e, tp.TrainLog)]
    assert any(m.startswith("Compiling the model's layers") for m in said)
    assert any("eager" in m and ("kept" in m or "back to eager" in m) for m in said)
    assert not compiled.compiler.active  # the merge and the export run eager
    # The same run, the same maths: fused kernels only reorder floating-point sums.
    for (name, want), got in zip(eager.params.items(), compiled.params.values(), strict=True):
        torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-4, msg=name)
    assert compiled.val_history[-1]["val_loss"] == \
        torch.testing.assert_close or abs(compiled.val_history[-1]["val_loss"]
                                          - eager.val_history[-1]["val_loss"]) < 1e-3


def test_a_compile_that_fails_leaves_the_run_training_eager(tmp_path: Path,
                                                            monkeypatch) -> None:
    events: list = []
    trainer = _trainer(tmp_path, "on", events)

    def broken(layer: torch.nn.Module, *args: object, **kwargs: object) -> None:
        # What a machine without a working C++ compiler gets from the first call.
        def fail(*a: object, **k: object) -> None:
            raise RuntimeError("InductorError: no C++ compiler found")
        layer._compiled_call_impl = fail

    monkeypatch.setattr(torch.nn.Module, "compile", broken)
    assert trainer.run() == "finished"
    assert trainer.step == 14
    report = trainer.compiler.report
    assert report is not None and report.kept is False and "C++" in report.failed
    warnings = [e.message for e in events
                if isinstance(e, tp.TrainLog) and e.level == "warning"]
    assert any("Compiling the model for speed failed" in m for m in warnings)
    assert len(trainer.history) == 14  # no step lost or repeated
