"""``hearth bench finetune``: Hearth's training loop against transformers ``Trainer`` + PEFT.

Runs :mod:`backends.bench.finetune` as a child (the app never imports torch):
each side in its own process, one after the other, and Hearth's MFU against the matmul
peak measured in the same run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from app.workers.spawn import run_module
from app.workspace import Workspace


def run_finetune_bench(ws: Workspace, model: str | None, *, steps: int, records: int,
                       batch_size: int, max_seq_len: int, threads: int, dtype: str,
                       repeat: int = 2, compile: str = "auto") -> dict[str, Any]:
    from app.models.library import find_starter_gguf

    path = Path(model) if model else find_starter_gguf()
    if path is None or not path.is_file():
        raise RuntimeError(f"no model file at {path}: pass --model PATH to a GGUF file")
    out = run_module("backends.bench.finetune", [
        "--model", str(path), "--steps", str(steps), "--records", str(records),
        "--batch-size", str(batch_size), "--max-seq-len", str(max_seq_len),
        "--threads", str(threads), "--dtype", dtype, "--repeat", str(repeat),
        "--compile", compile,
        "--cache", os.environ.get("HEARTH_CACHE") or str(ws.home.base_model_cache),
        "--json"])
    if out.returncode != 0:
        raise RuntimeError(f"the fine-tuning benchmark failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout[out.stdout.index("{"):])
