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

from typing import Any

from backends.training import teach_gate
from tests.benchmarks.starter_base import greedy_race


def main() -> None:
    shared = teach_gate.SHARED_PREFIX_MIN

    def least(tokens: int) -> Any:
        def setup(_base: Any) -> None:
            teach_gate.SHARED_PREFIX_MIN = tokens
        return setup

    greedy_race(__doc__ or "", ("every row", least(1 << 30)), ("shared", least(shared)),
                prompts=120)


if __name__ == "__main__":
    main()
