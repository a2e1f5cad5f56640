"""Fitting a long conversation into the context (finding S5): time per conversation length.

    python -m tests.benchmarks.bench_fit_prompt [--sizes 250,500,1000,2000] [--n-ctx 4096]

The real inference worker's ``fit_prompt`` (llama.cpp tokenizing, the model's own chat
template) on the tiny test model with SmolLM2's vocabulary: ``n`` messages of 20 words,
of which only the newest few thousand tokens fit. Prints the time, the ratio to the
previous size (about 2 per doubling is linear, about 4 quadratic), the template renders
and the characters tokenized, and the machine's load average, since on a shared machine
the time alone says little.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from multiprocessing import Pipe
from pathlib import Path

from app.inference import protocol as p
from backends.inference.llama_worker import Channel, Worker
from tests.tiny_model import write_tiny_llama

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
         "seven", "wizards", "quietly", "hex", "one", "jolly", "vexed", "sphinx", "near",
         "twelve", "tall", "oaks"]


def conversation(n: int) -> list[dict[str, str]]:
    """``n`` messages (user first, alternating), each of 20 words."""
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(20))}
            for i in range(n)]


def counted(worker: Worker) -> dict[str, int]:
    """Count the template renders and the characters llama.cpp tokenizes."""
    counts = {"renders": 0, "chars": 0}
    llm, render = worker.llm, worker.template.render
    tokenize = llm.tokenize

    def counting_tokenize(text: bytes, *args: object, **kwargs: object) -> list[int]:
        counts["chars"] += len(text)
        return tokenize(text, *args, **kwargs)

    def counting_render(*args: object, **kwargs: object) -> str:
        counts["renders"] += 1
        return render(*args, **kwargs)

    llm.tokenize = counting_tokenize  # type: ignore[method-assign]
    object.__setattr__(worker.template, "render", counting_render)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_fit_prompt")
    parser.add_argument("--sizes", default="250,500,1000,2000")
    parser.add_argument("--n-ctx", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "tiny.gguf")
        ours, theirs = Pipe()
        worker = Worker(Channel(ours))
        worker.load(p.Load(str(model), n_ctx=args.n_ctx))
        while theirs.poll(0.1):
            theirs.recv_bytes()
        counts = counted(worker)
        previous = None
        for n in (int(s) for s in args.sizes.split(",")):
            counts.update(renders=0, chars=0)
            started = time.perf_counter()
            tokens, dropped = worker.fit_prompt(p.Chat("bench", conversation(n),
                                                       p.SamplingParams(max_tokens=1)))
            seconds = time.perf_counter() - started
            ratio = f"x{seconds / previous:.1f}" if previous else "    "
            previous = seconds
            print(f"{n:5d} messages: {seconds:7.2f} s {ratio:>6}  kept {len(tokens)} tokens, "
                  f"dropped {dropped}; {counts['renders']} renders, "
                  f"{counts['chars']:,} chars tokenized; load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        worker.unload()


if __name__ == "__main__":
    main()
