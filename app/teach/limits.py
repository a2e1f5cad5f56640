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
    """Share of the corrections whose free-running answer carries the correction."""
    max_general_changed: float = 0.05
    """Share of the held-out everyday prompts whose answer may depart from the base's in
    substance (judge.departs). Ten facts taught: 0-3 of 112 changed; the refusal
    collapse: most of the everyday answers become refusals."""
    min_neighbours_kept: float = 0.85
    """Share of the derived neighbour questions (same relation, real subjects) that must
    keep the base's answer and say none of the corrections' words."""
    min_stops: float = 1.0
    """Share of the taught answers that must end (end of turn) within the limit."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
