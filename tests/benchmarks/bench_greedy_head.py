"""Teach's greedy answers with the output head over every position against the last one.

    python -m tests.benchmarks.bench_greedy_head [--prompts 8] [--rounds 1] [--threads 1]

The gate, the early-stop check and the fine-tune recall check all answer with
``teach_gate.greedy``, which asks the model for the last position's logits only
(``logits_to_keep=1``). This runs the same everyday prompts both ways on the starter
model, alternating rounds, checks the answers are identical, and prints the ratio of the
best times with the load average beside it.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch

from app.teach import probes
from backends.training import teach_gate
from tests.benchmarks.starter_base import starter_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    base = starter_base(args.threads)
    prompts = [[{"role": "user", "content": g.prompt}]
               for g in probes.general_prompts()["check"]][:args.prompts]
    last = base.model.forward

    def every_position(*a: Any, **k: Any) -> Any:
        k.pop("logits_to_keep", None)
        return last(*a, **k)

    times: dict[str, list[float]] = {"every position": [], "last only": []}
    texts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, forward in (("every position", every_position), ("last only", last)):
            base.model.forward = forward
            started = time.perf_counter()
            out = teach_gate.greedy(base.model, base.tokenizer, base.template, prompts,
                                    torch.device("cpu"))
            times[name].append(time.perf_counter() - started)
            texts[name] = [o.text for o in out]
            print(f"{name}: {times[name][-1]:.1f} s, load {os.getloadavg()[0]:.1f}")
    print("same answers:", texts["every position"] == texts["last only"])
    print(f"ratio: {min(times['every position']) / min(times['last only']):.2f}x")


if __name__ == "__main__":
    main()
