"""Teach's greedy answers with the output head over every position against the last one.

    python -m tests.benchmarks.bench_greedy_head [--prompts 8] [--rounds 1] [--threads 1]

The gate, the early-stop check and the fine-tune recall check all answer with
``teach_gate.greedy``, which asks the model for the last position's logits only
(``logits_to_keep=1``). This runs the same everyday prompts both ways on the starter
model, alternating rounds, counts the answers that are the same, and prints the ratio of
the best times with the load average beside it.
"""

from __future__ import annotations

from typing import Any

from tests.benchmarks.starter_base import greedy_race


def main() -> None:
    last: Any = None

    def every_position(base: Any) -> None:
        nonlocal last
        last = last or base.model.forward

        def forward(*a: Any, **k: Any) -> Any:
            k.pop("logits_to_keep", None)
            return last(*a, **k)

        base.model.forward = forward

    def last_only(base: Any) -> None:
        base.model.forward = last or base.model.forward

    greedy_race(__doc__ or "", ("every position", every_position), ("last only", last_only),
                prompts=8)


if __name__ == "__main__":
    main()
