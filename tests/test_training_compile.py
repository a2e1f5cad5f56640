"""torch.compile in the training loop: decided by measurement, verified, and never a
reason for a run to fail (backends/training/compiled.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from app.finetune import protocol as tp
from app.finetune.estimate import (
    COMPILE_COST_S,
    COMPILE_ENV,
    COMPILE_GAIN,
    COMPILE_MAX_HIDDEN,
    compile_mode,
    training_seconds,
    worth_compiling,
)
from app.finetune.settings import LoraSettings
from backends.training.compiled import BACKEND_ENV, MIN_GAIN
from backends.training.data import Tokenized
from backends.training.trainer import Trainer
from tests.finetune_fixtures import tiny_lora_llama

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def aot_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the wiring, not inductor's speed: aot_eager traces the same
    graphs in seconds, where inductor builds C++ kernels for a minute on 2 cores."""
    monkeypatch.setenv(BACKEND_ENV, "aot_eager")


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
    assert not worth_compiling("cpu", 0.9 * pays_from, 2, 576)  # a quick run stays eager
    assert worth_compiling("cpu", 1.1 * pays_from, 2, 576)
    assert worth_compiling("cpu", 0.9 * pays_from, 8, 576)  # more cores compile sooner
    assert not worth_compiling("cuda", 10 * pays_from, 2, 576)  # GPU: not measured, eager
    # A wider model than the gain was measured on (SmolLM2's 576) waits for a measurement.
    assert not worth_compiling("cpu", 10 * pays_from, 2, COMPILE_MAX_HIDDEN + 1)


def test_the_estimate_prices_a_compile_where_the_trainer_will_compile(monkeypatch) -> None:
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    assert compile_mode() == "auto"  # the default: long CPU runs compile
    long, short = 3 * COMPILE_COST_S / (1 - 1 / COMPILE_GAIN), 60.0
    compiled = training_seconds(long, "cpu", 2, "auto", 576)
    assert compiled == COMPILE_COST_S + long / COMPILE_GAIN < long
    assert training_seconds(short, "cpu", 2, "auto", 576) == short  # not worth it: eager
    assert training_seconds(short, "cpu", 2, "on", 576) > short  # forced: pays the compile
    assert training_seconds(long, "cpu", 2, "off", 576) == long
    assert training_seconds(long, "cuda", 2, "auto", 576) == long
    wide = COMPILE_MAX_HIDDEN + 1  # no gain counted where none was measured
    assert training_seconds(long, "cpu", 2, "auto", wide) == long
    assert training_seconds(long, "cpu", 2, "on", wide) == long + COMPILE_COST_S
    monkeypatch.setenv(COMPILE_ENV, "off")
    assert compile_mode() == "off"


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
    assert report.failed is None
    assert report.kept == (report.compiled_tokens_per_s >= MIN_GAIN * report.eager_tokens_per_s)
    said = [e.message for e in events if isinstance(e, tp.Log)]
    assert any(m.startswith("Compiling the model's layers") for m in said)
    verdict = "kept" if report.kept else "back to eager"
    assert any(m.startswith("Compiled layers ran") and m.endswith(verdict) for m in said)
    assert not compiled.compiler.active  # the merge and the export run eager
    # The same run, the same maths (inductor's fused kernels only reorder the sums).
    for (name, want), got in zip(eager.params.items(), compiled.params.values(), strict=True):
        torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-4, msg=name)
    assert abs(compiled.val_history[-1]["val_loss"] - eager.val_history[-1]["val_loss"]) < 1e-3


def test_the_early_stop_check_runs_the_layers_eager(tmp_path: Path) -> None:
    """Teach's check at an epoch's end generates with a KV cache: run through the
    compiled layers, dynamo rebuilt one per cache layer until its recompile limit."""
    from backends.training import compiled as c

    trainer = _trainer(tmp_path, "on", [])
    seen: list[tuple[bool, int]] = []

    def check() -> None:
        before = c._graphs()
        seen.append((trainer.compiler.active, before))
        with torch.no_grad():
            past = trainer.model(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True)
            trainer.model(input_ids=torch.tensor([[8]]), use_cache=True,
                          past_key_values=past.past_key_values)
        seen[-1] = (seen[-1][0], c._graphs() - before)

    trainer.stop_check = check
    assert trainer.run() == "finished"
    report = trainer.compiler.report
    assert report is not None and report.at_step == 3
    assert len(seen) >= 2  # epochs of 4 steps: checks after the compile began
    assert seen == [(False, 0)] * len(seen)


def test_a_step_that_builds_a_graph_is_compile_time_not_the_speed_to_come(
        monkeypatch) -> None:
    from backends.training import compiled as c

    graphs = [0]
    monkeypatch.setattr(c, "_graphs", lambda: graphs[0])
    compiler = c.LayerCompiler([torch.nn.Linear(2, 2) for _ in range(3)])
    assert len(compiler.layers) == 2  # the first layer stays eager
    compiler.start(step=3, eager_tokens_per_s=100.0, remaining_eager_s=1000.0)

    def step(seconds: float, tokens: int, builds: bool) -> tuple[bool, str | None]:
        compiler.begin_step()
        graphs[0] += builds
        return compiler.timed(seconds, tokens)

    assert step(10.0, 100, builds=True) == (True, None)  # the first graph: 9 s over eager
    for _ in range(3):
        assert step(1.0, 150, builds=False) == (False, None)
    assert step(5.0, 100, builds=True) == (True, None)  # a recompile (a one-row part)
    said = [step(1.0, 150, builds=False)[1] for _ in range(c.VERIFY_STEPS - 3)][-1]
    report = compiler.report
    assert report.compile_s == 13.0 and report.compiled_tokens_per_s == 150.0
    assert report.kept and said.startswith("compiled layers ran 150 tokens/s against 100")
    assert step(30.0, 100, builds=True)[0] and report.compile_s == 42.0  # kept: still counted
    compiler.release()
    assert step(1.0, 100, builds=False) == (False, None) and not compiler.active


def test_a_compile_that_fails_leaves_the_run_training_eager(tmp_path: Path,
                                                            monkeypatch) -> None:
    events: list = []
    trainer = _trainer(tmp_path, "on", events)

    def broken(layer: torch.nn.Module, *args: object, **kwargs: object) -> None:
        # What an operator inductor cannot lower, or a broken compiler, gives the first call.
        def fail(*a: object, **k: object) -> None:
            raise RuntimeError("InductorError: no C++ compiler found")
        layer._compiled_call_impl = fail

    monkeypatch.setattr(torch.nn.Module, "compile", broken)
    assert trainer.run() == "finished"
    assert trainer.step == 14
    report = trainer.compiler.report
    assert report is not None and report.kept is False and "C++" in report.failed
    warnings = [e.message for e in events
                if isinstance(e, tp.Log) and e.level == "warning"]
    assert any("Compiling the model for speed failed" in m for m in warnings)
    assert len(trainer.history) == 14  # no step lost or repeated


def test_without_a_cpp_compiler_the_run_says_so_and_trains_eager(tmp_path: Path,
                                                                  monkeypatch) -> None:
    from torch._inductor import cpp_builder

    monkeypatch.delenv(BACKEND_ENV)  # inductor's, the backend that needs one

    def missing() -> str:
        raise RuntimeError("no valid C++ compiler among ('g++',)")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    events: list = []
    trainer = _trainer(tmp_path, "on", events)
    assert trainer.run() == "finished" and trainer.step == 14
    report = trainer.compiler.report
    assert report.kept is False and report.failed.startswith("no C++ compiler")
    assert not trainer.compiler.active and report.compile_s is None  # nothing was built
    said = [e.message for e in events if isinstance(e, tp.Log)]
    assert any(m.startswith("Training eager: no C++ compiler") for m in said)
