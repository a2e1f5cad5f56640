"""``hearth bench finetune`` as a person runs it: both trainers, the ratios and the MFU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from backends.training.compiled import BACKEND_ENV

ROOT = Path(__file__).resolve().parent.parent


def test_bench_finetune_json_has_the_ratios_and_mfu(tmp_path: Path, tiny_gguf: Path,
                                                    hearth_cache: Path) -> None:
    # The wiring is under test, not inductor's code (test_training_compile builds a real
    # one): aot_eager traces the same graph without a C++ compile.
    env = dict(os.environ, HEARTH_HOME=str(tmp_path / "home"), **{BACKEND_ENV: "aot_eager"})
    out = subprocess.run([sys.executable, "-m", "app.cli.main", "bench", "finetune",
                          "--model", str(tiny_gguf), "--steps", "6", "--records", "16",
                          "--max-seq-len", "96", "--threads", "1", "--repeat", "1",
                          "--compile", "on", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    hearth, baseline = result["results"]["hearth"], result["results"]["baseline"]
    assert hearth["tokens"] > 0 and baseline["tokens"] > 0  # real tokens, not padding
    assert result["speedup_tokens_per_s"] == hearth["tokens_per_s"] / baseline["tokens_per_s"]
    assert result["memory_ratio"] == (hearth["peak_memory_bytes"]
                                      / baseline["peak_memory_bytes"])
    assert result["val_loss_delta"] == hearth["val_loss"] - baseline["val_loss"]
    # The tiny model is below the size where bf16 is tried: the probe keeps fp32.
    assert result["dtype"] == "float32" and result["dtype_probe"]["dtype"] == "float32"
    assert 0 < result["mfu"] == (hearth["achieved_gflops_per_s"]
                                 / hearth["peak_gflops_per_s"])
    assert all(p > 0 for p in hearth["peak_before_after"])
    assert any("MFU" in line for line in result["summary"])
    # Compiled after the first three steps measured (its time counts in Hearth's).
    assert hearth["compiled"]["at_step"] == 3 and hearth["compiled"]["failed"] is None
    assert hearth["compiled"]["compile_s"] is not None
    assert any(line.startswith("round 1: compiling") for line in result["summary"])
