"""The starter model as Teach's PyTorch side loads it, for the benchmarks that time it,
and the race those benchmarks run: ``teach_gate.greedy`` two ways on the same prompts."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.models.library import find_starter_gguf
from app.paths import resolve_home
from app.teach import probes
from backends.training import teach_gate
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


Setup = Callable[[Any], None]
"""Puts the loaded base (or ``teach_gate``) into one way of answering."""


def greedy_race(doc: str, before: tuple[str, Setup], after: tuple[str, Setup],
                prompts: int) -> None:
    """Answer the gate's everyday prompts greedily ``before`` and ``after`` a change,
    alternating rounds; print each time with the load average, how many answers are word
    for word the same, and the ratio of the best times. ``doc`` is the benchmark's
    docstring (its first line describes the command)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=prompts)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    base = starter_base(args.threads)
    asked = [[{"role": "user", "content": g.prompt}]
             for g in probes.general_prompts()["check"]][:args.prompts]
    times: dict[str, list[float]] = {before[0]: [], after[0]: []}
    texts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, setup in (before, after):
            setup(base)
            started = time.perf_counter()
            out = teach_gate.greedy(base.model, base.tokenizer, base.template, asked,
                                    torch.device("cpu"))
            times[name].append(time.perf_counter() - started)
            texts[name] = [o.text for o in out]
            print(f"{name}: {times[name][-1]:.1f} s, load {os.getloadavg()[0]:.1f}")
    same = sum(a == b for a, b in zip(texts[before[0]], texts[after[0]], strict=True))
    print(f"same answers: {same} of {len(asked)}")
    print(f"ratio: {min(times[before[0]]) / min(times[after[0]]):.2f}x")
