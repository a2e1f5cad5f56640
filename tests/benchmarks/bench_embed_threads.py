"""The embedding model on all cores against one thread: a query, and a batch.

    python -m tests.benchmarks.bench_embed_threads [--rounds 2] [--queries 30]

Why a search's query runs on one thread (``app.docs.embedder.QUERY_TEXTS``): this loads
all-MiniLM-L6-v2 as the embedding worker does (``backends.embedding.worker.MiniLM``),
then alternates rounds of all physical cores and of one thread, each round timing
single short queries (median) and one batch of 32 passages of 800 characters, with the
load average beside each. The vectors of both sides are compared (they must agree).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from app.machine.threads import physical_cores
from backends.embedding.worker import MiniLM, model_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    model = MiniLM(model_dir())
    text = Path(str(resources.files("resources") / "docs_bench" / "kiln.md")).read_text()
    batch = [text[i:i + 800] for i in range(0, 3200, 100)][:32]
    query = ["How long do very thick pots have to dry before firing?"]
    model.embed(query)
    model.embed(batch)
    vectors: dict[int, np.ndarray] = {}
    best: dict[int, float] = {}
    for _ in range(args.rounds):
        for threads in (physical_cores(), 1):
            torch.set_num_threads(threads)
            times = []
            for _ in range(args.queries):
                t0 = time.perf_counter()
                model.embed(query)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            vectors[threads] = model.embed(batch)
            rate = len(batch) / (time.perf_counter() - t0)
            median = statistics.median(times) * 1000
            best[threads] = min(best.get(threads, median), median)
            print(f"threads {threads}: query median {median:.1f} ms, {rate:.1f} passages/s, "
                  f"load {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    same = np.allclose(vectors[physical_cores()], vectors[1], atol=1e-5)
    print(f"query, best median: all cores / one thread = "
          f"{best[physical_cores()] / best[1]:.2f}x; vectors agree: {same}")


if __name__ == "__main__":
    main()
