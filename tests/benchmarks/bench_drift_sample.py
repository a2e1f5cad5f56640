"""Teach's drift diagnostic on a sample of the everyday replies against all of them.

    python -m tests.benchmarks.bench_drift_sample [--threads 1]

The gate reports the teacher-forced drift (the share of the base's next-token choices a
tuning changed) as a diagnostic no verdict reads. Measured on all 120 everyday replies it
costs one forward pass over prompt and reply each, about as much as answering them; the
gate measures it on ``teach_gate.DRIFT_REPLIES`` of them, evenly spread. This answers the
everyday prompts with the starter, then measures the drift of three knowledge-free
perturbations of it (``teach_gate.Perturbed``, a teach run's size and either side) on all
replies and on the sample, and prints both figures, the time of each and their ratio
with the load average beside it.
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
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    base = starter_base(args.threads)
    device = torch.device("cpu")
    asked = [[{"role": "user", "content": g.prompt}]
             for g in probes.general_prompts()["check"]]
    replies = teach_gate.greedy(base.model, base.tokenizer, base.template, asked, device)
    sample = replies[::max(1, len(replies) // teach_gate.DRIFT_REPLIES)]
    for seed, scale in ((1, 2 ** -5), (2, 2 ** -6), (3, 2 ** -4)):
        nudged = teach_gate.Perturbed(base.model, scale=scale, seed=seed)
        began = time.perf_counter()
        whole = teach_gate.drift(nudged, replies, device)
        whole_s = time.perf_counter() - began
        began = time.perf_counter()
        part = teach_gate.drift(nudged, sample, device)
        part_s = time.perf_counter() - began
        print(f"perturbation {scale:g}: all {len(replies)} replies {whole['changed']:.1%} "
              f"({whole_s:.1f} s), {len(sample)} of them {part['changed']:.1%} "
              f"({part_s:.1f} s): x{whole_s / part_s:.2f} faster; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
