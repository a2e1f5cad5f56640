"""The gate's limits, each calibrated on runs it must pass and runs it must refuse.

Every figure below was measured with ``hearth bench teach`` on the starter model
(BENCHMARKS.md, "Teach, judged on answers", with the command): ordinary made-up facts
taught ten at a time must pass; the poison sets (a refusal collapse, contradictory
pairs, one fact written 40 times, an insult) must be refused. A limit set just above
what the default run happens to reach guards nothing, so each says what it separates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class GateLimits:
    """What a taught version must reach before it may answer in chat."""

    min_learned: float = 0.8
    """Share of the corrections whose free-running answer carries the correction. Ten
    made-up facts, defaults: 10 of 10 in each of three runs."""
    max_general_changed: float = 0.125
    """Share of the 120 held-out everyday prompts whose answer may depart from the base's
    (judge.departs, judge.counts). Ten made-up facts taught with the defaults changed 7,
    9 and 10 (three runs); 40 ordinary questions corrected with "I cannot help with
    that." changed 105. The limit (15) sits above the ordinary runs with room for their
    spread and far below the collapse. (The benchmark's target, 5 %, is stricter: the
    starter model does not reach it yet.)"""
    min_neighbours_kept: float = 0.7
    """Share of the derived neighbour questions (same relation, real subjects; never
    trained) that must keep the base's answer and say none of the corrections' words.
    Ten facts: 16 and 17 of 20 kept; the refusal collapse: 1 of 10."""
    min_earlier_kept: float = 0.9
    """Share of the earlier corrections (a version continued in rounds, sampled) that the
    new version must still answer. The benchmark's target is 95 %; a round that forgets
    more than one in ten is refused, naming what it forgot."""
    min_stops: float = 1.0
    """Share of the taught answers that must end (end of turn) within 64 tokens: a
    version that loops is refused (one of three ten-fact runs had two that ran on)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
