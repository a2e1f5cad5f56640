"""Teach's records, as types: its section of run.json and the gate's report.

The corrections travel to the training worker in ``run.json`` (:class:`TeachSpec`, its
:class:`TeachCase` list); the gate's verdict comes back in ``summary.json`` and the
``Finished`` event (:class:`GateReport`), and a version keeps its counts in
``versions.json``; the base's reference answers are cached as :class:`Reply` records
(:mod:`app.teach.reference`). All of them are written and read by the records' one codec
(:mod:`app.codec`): tolerant, so that run folders, versions and caches written when these
were plain JSON objects still load. The app and the worker both import them from here,
so a key cannot be spelled two ways.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from app.codec import from_dict, to_dict
from app.teach.limits import GateLimits

Messages = list[dict[str, str]]


class CaseSource(enum.StrEnum):
    """Where a case comes from."""

    CORRECTION = "correction"
    """A correction made in chat: trained in all its forms, checked."""
    EXTRA = "extra"
    """A chat record of the extra data given with ``--extra``: the same as a correction."""
    EARLIER = "earlier"
    """A correction the continued version already knows (app.teach.continuing): replayed
    in its own words and asked again only when sampled."""


@dataclass(frozen=True)
class GeneralPrompt:
    """One of the shipped everyday prompts (:func:`app.teach.probes.general_prompts`)."""

    prompt: str = ""
    kind: str = ""
    """What kind of answer it asks for (a fact, a how-to, ...): the judge compares by it."""


@dataclass
class TeachCase:
    """A correction with the questions Hearth derives from it (app.teach.run.make_case)."""

    id: int | None = None
    """The CorrectionStore id, or the line of an extra record."""
    source: CaseSource = CaseSource.CORRECTION
    prompt: Messages = field(default_factory=list)
    chosen: str = ""
    """The corrected reply."""
    rejected: str = ""
    """The reply it replaced ("" for extra data)."""
    variations: list[Messages] = field(default_factory=list)
    """The question in other forms, trained on (app.teach.probes.variations)."""
    rewordings: list[Messages] = field(default_factory=list)
    """Other forms again, never trained: the gate's *reworded* check."""
    neighbours: list[str] = field(default_factory=list)
    """The same relation about real subjects, never trained: the gate asks them."""
    rehearse_neighbours: list[str] = field(default_factory=list)
    """Other neighbour questions whose base answers are rehearsed in training."""
    replay: bool = False
    """An earlier case trained again this round (its own question only)."""
    check: bool = False
    """An earlier case the gate asks again this round."""
    tools: str = ""
    """The tool definitions offered with the prompt (OpenAI's list as JSON text; ""
    none): trained and asked with them, as the chat asked."""
    calls: str = ""
    """The calls the corrected reply makes (OpenAI's ``tool_calls`` as JSON text; ""
    none): *learned* is then the same calls read back from the answer."""
    rejected_calls: str = ""
    """The calls of the reply it replaced."""

    @property
    def new(self) -> bool:
        """Trained afresh this run (not an earlier correction of a continued version)."""
        return self.source != CaseSource.EARLIER

    @property
    def question(self) -> str:
        """Every user message of the prompt: what the judge reads the answer against."""
        return " ".join(m["content"] for m in self.prompt if m["role"] == "user")

    def reply(self, chosen: bool = True) -> dict[str, str]:
        """The corrected (or the rejected) reply as an assistant message."""
        content, calls = ((self.chosen, self.calls) if chosen
                          else (self.rejected, self.rejected_calls))
        return {"role": "assistant", "content": content,
                **({"tool_calls": calls} if calls else {})}


@dataclass
class TeachSpec:
    """Teach's section of run.json: the corrections and the gate's inputs."""

    base: str = ""
    """The library name of the model the corrections were made on."""
    corrections: list[int] = field(default_factory=list)
    extra: str | None = None
    """Path of extra training data given alongside the corrections."""
    cases: list[TeachCase] = field(default_factory=list)
    check_prompts: list[GeneralPrompt] = field(default_factory=list)
    """The held-out everyday prompts: the gate's general check."""
    rehearse_prompts: list[str] = field(default_factory=list)
    limits: GateLimits = field(default_factory=GateLimits)
    reference_cache: str | None = None
    """Where the base model's replies to the general prompts are cached."""
    start_from: str | None = None
    """The adapter folder of the version this run continues (app.teach.continuing); None:
    LoRA starts from zero on the base."""
    start_version: str | None = None

    @property
    def gate_prompts(self) -> int:
        """How many prompts the gate replays (the checks' cost)."""
        return (sum(1 + len(c.rewordings) + 2 * len(c.neighbours)
                    for c in self.checked_cases) + len(self.check_prompts))

    @property
    def checked_cases(self) -> list[TeachCase]:
        """The cases the gate asks: every new one, and the sampled earlier ones."""
        return [c for c in self.cases if c.new or c.check]

    @property
    def new_cases(self) -> list[TeachCase]:
        """The cases trained afresh (the corrections new to this run, extra records)."""
        return [c for c in self.cases if c.new]


@dataclass
class Reply:
    """A greedy reply, with the token ids that the rehearsal trains on and the drift
    diagnostic scores (backends.training.teach_gate.greedy)."""

    prompt_ids: list[int] = field(default_factory=list)
    reply_ids: list[int] = field(default_factory=list)
    stopped: bool = False
    """It ended with an end-of-turn token within the length asked."""
    text: str = ""
    stable: bool = True
    """For a base's reference reply: the base, perturbed each way, still answers the same
    in substance (backends.training.teach_gate.Perturbed)."""


# ------------------------------------------------------------------ the report


@dataclass
class Paraphrase:
    """The taught model's answer to a rewording of a corrected question."""

    prompt: str = ""
    answer: str = ""
    carried: bool = False


@dataclass
class NeighbourAnswer:
    """A neighbour question: the base's answer beside the taught model's."""

    prompt: str = ""
    base: str = ""
    answer: str = ""
    kept: bool = True
    why: str | None = None
    """How it departs from the base's (app.teach.judge.departs); None: kept."""


@dataclass
class CaseResult:
    """One case as the gate found it: the taught answer and what it says."""

    id: int | None = None
    source: CaseSource = CaseSource.CORRECTION
    question: str = ""
    chosen: str = ""
    answer: str = ""
    stops: bool = True
    """The answer ends (end of turn) within the limit and does not loop; runs before the
    check existed did not record it."""
    prefers_chosen: bool | None = None
    """Whether the corrected reply is likelier than the rejected one (None: no rejected
    reply to compare with)."""
    carried: bool = False
    learned: bool = False
    paraphrases: list[Paraphrase] = field(default_factory=list)
    neighbours: list[NeighbourAnswer] = field(default_factory=list)


class HarmKind(enum.StrEnum):
    NEIGHBOUR = "neighbour"
    GENERAL = "general"


@dataclass
class HarmedAnswer:
    """An answer the teaching changed in substance, base beside taught."""

    kind: HarmKind = HarmKind.GENERAL
    prompt: str = ""
    base: str = ""
    answer: str = ""
    why: str = ""


@dataclass
class GeneralAnswer:
    """An everyday check prompt: the base's answer and the taught model's (the record)."""

    prompt: str = ""
    kind: str = ""
    base: str = ""
    stable: bool = True
    """Whether the base's answer survives knowledge-free perturbations
    (backends.training.teach_gate.Perturbed)."""
    answer: str = ""


@dataclass
class ReferenceCost:
    """What the base's reference answers cost a run: the estimate before the next Teach
    prices a first run by it (app.teach.estimate)."""

    seconds: float = 0.0
    cached: bool = False


@dataclass
class GateReport:
    """``summary.teach``: every measure of the gate, the harmed answers and the verdict
    (backends.training.teach_gate.verdict)."""

    learned: int = 0
    total: int = 0
    """The new cases (the earlier ones count apart)."""
    stops: int = 0
    """Taught answers that end, earlier cases included."""
    earlier_kept: int = 0
    earlier_total: int = 0
    reworded: int = 0
    """Rewordings whose answer carries the correction, of ``paraphrases``."""
    paraphrases: int = 0
    neighbours_kept: int = 0
    neighbours_total: int = 0
    general_changed: int = 0
    general_total: int = 0
    general_unstable: int = 0
    """Everyday prompts whose base answer is a coin toss (only harm counts there)."""
    limits: GateLimits = field(default_factory=GateLimits)
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    culprits: list[str] = field(default_factory=list)
    """The gate's words for the cases at fault ("correction 2 (“Who invented…”)")."""
    culprit_ids: list[int] = field(default_factory=list)
    """The corrections (CorrectionStore ids) among them."""
    harmed: list[HarmedAnswer] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    general_answers: list[GeneralAnswer] = field(default_factory=list)
    drift: float | None = None
    """Diagnostic only: the share of the base's next-token choices the tuning changed."""
    nll: float | None = None
    drift_positions: int | None = None
    gate_seconds: float | None = None
    reference: ReferenceCost | None = None
    """None: a run from before Hearth measured its reference answers."""

    def without_answers(self) -> GateReport:
        """What a version keeps: every count and reason, not each answer (versions.json is
        read at every chat start)."""
        return replace(self, cases=[], general_answers=[])

    def to_json(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_json(cls, data: Any) -> GateReport:
        return from_dict(cls, data)
