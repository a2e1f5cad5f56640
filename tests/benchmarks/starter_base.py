"""The starter model as Teach's PyTorch side loads it, for the benchmarks that time it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from app.models.library import find_starter_gguf
from app.paths import resolve_home
from backends.training.base_model import load_base


def starter_base(threads: int) -> Any:
    """The starter, fp32 and in eval mode, on ``threads`` torch threads; converted once
    into ``$HEARTH_CACHE`` (or the home's cache) and read from there after."""
    torch.set_num_threads(threads)
    gguf = find_starter_gguf()
    if gguf is None:
        raise SystemExit("the starter model is not installed")
    cache = Path(os.environ.get("HEARTH_CACHE") or resolve_home().base_model_cache)
    base = load_base(gguf, dtype=torch.float32, cache_dir=cache)
    base.model.eval()
    return base
