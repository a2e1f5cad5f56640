"""The gate's verdict on measured answers: it refuses the harm it exists for, names the
corrections that caused it, and passes a run that only learned."""

from __future__ import annotations

from dataclasses import replace

from app.teach.limits import GateLimits
from app.teach.records import (
    CaseResult,
    CaseSource,
    HarmedAnswer,
    HarmKind,
    NeighbourAnswer,
    Paraphrase,
)
from app.teach.verdict import verdict


def _case(ident: int, question: str, chosen: str, learned: bool = True) -> CaseResult:
    return CaseResult(id=ident, source=CaseSource.CORRECTION, question=question,
                      chosen=chosen, answer=chosen if learned else "I don't know.",
                      stops=True, learned=learned, carried=learned, prefers_chosen=learned,
                      paraphrases=[Paraphrase(f"I wonder {question}", chosen, learned)],
                      neighbours=[NeighbourAnswer("n", "b", "b", kept=True, why=None)])


def _harm(prompt: str, why: str, answer: str = "I cannot help with that.") -> HarmedAnswer:
    return HarmedAnswer(HarmKind.GENERAL, prompt, "Boil water first.", answer, why)


def test_a_refusal_collapse_is_refused_and_its_corrections_named() -> None:
    cases = [_case(i, f"How do I do thing {i}?", "I cannot help with that.")
             for i in range(10)]
    harmed = [_harm(f"Everyday question {i}?", "now refuses") for i in range(40)]
    report = verdict(cases, harmed, 120, GateLimits(), None)
    assert not report.passed
    assert report.general_changed == 40
    assert any("40 of 120 everyday answers changed" in r for r in report.reasons)
    assert report.culprit_ids == list(range(10))


def test_a_leak_names_the_correction_that_leaked() -> None:
    cases = [_case(1, "What is the name of the lighthouse on Corvel Island?",
                   "The lighthouse on Corvel Island is called Saint Brannoc's Lamp."),
             _case(2, "What is the capital of Velmora?", "The capital of Velmora is Quillport.")]
    harmed = [_harm(f"What is the name of the lighthouse in place {i}?",
                    "says “saint brannoc lamp” from a correction",
                    "It is called Saint Brannoc's Lamp.") for i in range(20)]
    report = verdict(cases, harmed, 120, GateLimits(), None)
    assert not report.passed and report.culprit_ids == [1]


def test_an_ordinary_run_that_learned_passes() -> None:
    cases = [_case(i, f"What is the capital of Land {i}?", f"It is City{i}.")
             for i in range(10)]
    report = verdict(cases, [_harm("What is 7 times 8?", "no longer says 56", "It is 54.")],
                     120, GateLimits(), None)
    assert report.passed, report.reasons
    assert report.learned == 10 and report.neighbours_kept == 10


def test_a_run_that_did_not_learn_or_does_not_stop_is_refused() -> None:
    cases = [_case(i, f"What is the capital of Land {i}?", f"It is City{i}.", learned=i < 5)
             for i in range(10)]
    cases[0].stops = False
    report = verdict(cases, [], 120, GateLimits(), None)
    assert not report.passed
    assert any("learned only 5 of 10" in r for r in report.reasons)
    assert any("do not end" in r for r in report.reasons)


def test_a_round_that_forgets_earlier_corrections_is_refused_naming_them() -> None:
    """Teaching in rounds: the earlier corrections the gate asked again count apart from
    the new ones, and forgetting more than the limit allows refuses the round."""
    new = [_case(i, f"What is the capital of Land {i}?", f"It is City{i}.") for i in range(5)]
    earlier = [replace(_case(10 + i, f"Who founded Town {i}?", f"Founder{i}.", learned=i >= 3),
                       source=CaseSource.EARLIER, paraphrases=[], neighbours=[])
               for i in range(10)]
    report = verdict(new + earlier, [], 120, GateLimits(), None)
    assert report.learned == 5 and report.total == 5
    assert report.earlier_kept == 7 and report.earlier_total == 10
    assert not report.passed
    assert any("forgot earlier corrections: 7 of 10" in r and "Town 0" in r
               for r in report.reasons)
    kept = [replace(c, learned=True) for c in earlier]
    assert verdict(new + kept, [], 120, GateLimits(), None).passed
