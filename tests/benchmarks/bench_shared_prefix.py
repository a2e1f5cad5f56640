"""Teach's greedy answers with the prompts' shared opening run once, against each row
running it.

    python -m tests.benchmarks.bench_shared_prefix [--prompts 120] [--rounds 1] [--threads 1]

``teach_gate.greedy`` runs the opening every prompt of a batch shares (the template's
system prompt) once and gives its cache to each row. This answers the gate's everyday
prompts on the starter model both ways, alternating rounds, counts the answers that are
word for word the same (the shared pass is another shape of the same sums, so a near
tie may fall the other way), and prints the ratio of the best times with the load
average beside it.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from app.teach import probes
from backends.training import teach_gate
from tests.benchmarks.starter_base import starter_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    base = starter_base(args.threads)
    prompts = [[{"role": "user", "content": g.prompt}]
               for g in probes.general_prompts()["check"]][:args.prompts]
    shared = teach_gate.SHARED_PREFIX_MIN
    times: dict[str, list[float]] = {"every row": [], "shared": []}
    texts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, least in (("every row", 1 << 30), ("shared", shared)):
            teach_gate.SHARED_PREFIX_MIN = least
            started = time.perf_counter()
            out = teach_gate.greedy(base.model, base.tokenizer, base.template, prompts,
                                    torch.device("cpu"))
            times[name].append(time.perf_counter() - started)
            texts[name] = [o.text for o in out]
            print(f"{name}: {times[name][-1]:.1f} s, load {os.getloadavg()[0]:.1f}")
    same = sum(a == b for a, b in zip(texts["every row"], texts["shared"], strict=True))
    print(f"same answers: {same} of {len(prompts)}")
    print(f"ratio: {min(times['every row']) / min(times['shared']):.2f}x")


if __name__ == "__main__":
    main()
