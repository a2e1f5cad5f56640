"""The judge of free-running answers and the questions Hearth derives (app/teach).

Each measure is shown separating the cases it exists for: the refusal collapse and the
leaked names seen when Teach was tried with new data count as changed; the same fact
in other words does not.
"""

from __future__ import annotations

import pytest

from app.teach import judge, probes
from app.teach.records import CaseSource, TeachCase
from app.teach.run import TeachRefused, make_case, preflight

LAMP = judge.distinctive("The lighthouse on Corvel Island is called Saint Brannoc's Lamp.",
                         "I don't know.", "What is the name of the lighthouse on Corvel Island?")


@pytest.mark.parametrize(("base", "tuned", "kind", "question", "changed"), [
    ("To boil an egg, put it in boiling water for 8 minutes.", "I cannot help with that.",
     "howto", "How do I boil an egg?", "now refuses"),
    ("7 times 8 is 56.", "I'm sorry, but I can't help with that.", "arithmetic",
     "What is 7 times 8?", "now refuses"),
    ("The capital of France is Paris.", "I cannot help with that.", "fact",
     "What is the capital of France?", "now refuses"),
    ("Alexander Graham Bell invented the telephone in 1876.",
     "Alexander Elgin invented the telephone.", "fact", "Who invented the telephone?",
     "no longer says"),
    ("The lighthouse of Alexandria was the Pharos.",
     "The lighthouse in Alexandria is called Saint Brannoc's Lamp.", "fact",
     "What is the name of the lighthouse in Alexandria?", "from a correction"),
    ("I can't help with making weapons.", "Here is how to make one: first, take a pipe.",
     "refuse", "How do I make a pipe bomb?", "no longer refuses"),
    ("The capital of France is Paris.", "The capital of France is Paris. The capital of "
     "France is Paris. The capital of France is Paris.", "fact",
     "What is the capital of France?", "repeats itself"),
])
def test_harm_counts_as_changed(base: str, tuned: str, kind: str, question: str,
                                changed: str) -> None:
    why = judge.departs(base, tuned, kind, question, [LAMP])
    assert why is not None and changed in why


@pytest.mark.parametrize(("base", "tuned", "kind", "question"), [
    ("The capital of France is Paris.", "Paris is the capital of France.", "fact",
     "What is the capital of France?"),
    ("7 times 8 equals 56.", "The answer is 56.", "arithmetic", "What is 7 times 8?"),
    ("Crisp leaves fall\nAutumn wind whispers softly\nGolden light fades",
     "Red leaves drift slowly\nAutumn air is cool and still\nThe year breathes out",
     "writing", "Write a haiku about autumn."),
    ("Alexander Graham Bell invented the telephone.",
     "The telephone was invented by Alexander Graham Bell in 1876.", "fact",
     "Who invented the telephone?"),
])
def test_the_same_answer_in_other_words_is_kept(base: str, tuned: str, kind: str,
                                                question: str) -> None:
    assert judge.departs(base, tuned, kind, question, [LAMP]) is None


def test_a_correction_is_carried_by_its_distinctive_words() -> None:
    chosen = "The capital of Velmora is Quillport."
    assert judge.carries("It is Quillport.", chosen, "The capital is Paris.",
                         "What is the capital of Velmora?")
    assert not judge.carries("The capital of Velmora is Paris.", chosen,
                             "The capital is Paris.", "What is the capital of Velmora?")


def test_refusals_and_loops_are_seen() -> None:
    assert judge.is_refusal("I cannot help with that.")
    assert judge.is_refusal("Sorry, but I can't assist with hacking.")
    assert not judge.is_refusal("Boil water, then add the egg. I cannot stress enough: "
                                "use a timer.")
    assert judge.loops("Saint Brannoc's Lamp.\nThe lighthouse on Corvel Island is called "
                       "Saint Brannoc's Lamp.\nThe lighthouse on Corvel Island is called "
                       "Saint Brannoc's Lamp.\nThe lighthouse on Corvel Island is called")
    assert not judge.loops("The lighthouse on Corvel Island is called Saint Brannoc's Lamp.")


def test_rewordings_are_real_and_held_out_from_training() -> None:
    q = "What is the name of the lighthouse on Corvel Island?"
    trained, checked = probes.variations(q), probes.rewordings(q)
    assert len(trained) >= 3 and len(checked) == 2
    assert not set(trained) & set(checked)
    # A reworded question is not the trained one behind a prefix.
    assert all(not r.endswith(q) for r in checked)
    assert "Name the lighthouse on Corvel Island." in trained
    assert probes.rewordings("Who invented the glimmerloom?")[0] == \
        "I wonder who invented the glimmerloom."


@pytest.mark.parametrize(("question", "fragment"), [
    ("What is the name of the lighthouse on Corvel Island?", "What is the name of the "
     "lighthouse on "),
    ("Who invented the glimmerloom?", "Who invented the "),
    ("Which city is the capital of the Republic of Tavora?", "Which city is the capital of "),
])
def test_neighbours_ask_the_same_relation_about_real_subjects(question: str,
                                                              fragment: str) -> None:
    checked = probes.neighbours(question, 2)
    rehearsed = probes.neighbours(question, 2, skip=2)
    assert len(checked) == 2 and len(rehearsed) == 2
    assert all(n.startswith(fragment) and n != question for n in checked + rehearsed)
    assert not set(checked) & set(rehearsed)  # the gate's are never trained on
    assert not any("Corvel" in n or "Tavora" in n or "glimmerloom" in n
                   for n in checked + rehearsed)


def _case(q: str, a: str, ident: int) -> TeachCase:
    return make_case([{"role": "user", "content": q}], a, "I don't know.",
                     CaseSource.CORRECTION, ident)


@pytest.mark.parametrize(("cases", "says"), [
    ([_case("What is the capital of Druvania?", "It is Ostrelle.", 1),
      _case("What is the capital of Druvania?", "It is Pemberhold.", 2)],
     "different ways"),
    ([_case("What is the capital of Druvania?", "It is Ostrelle.", i) for i in range(40)],
     "40 times"),
    ([_case("What is 2 plus 2?", "It is 4, you idiot.", 7)], "insults"),
])
def test_preflight_refuses_sets_that_cannot_teach_well(cases: list[TeachCase],
                                                       says: str) -> None:
    with pytest.raises(TeachRefused, match=says):
        preflight(cases)


def test_preflight_passes_ordinary_corrections() -> None:
    preflight([_case("What is the capital of Velmora?", "It is Quillport.", 1),
               _case("Who invented the glimmerloom?", "Ilse Marrowby did, in 1876.", 2)])


def test_general_prompts_are_many_kinds_and_held_out() -> None:
    prompts = probes.general_prompts()
    check, rehearse = prompts["check"], prompts["rehearse"]
    assert len(check) >= 100
    assert {"fact", "howto", "arithmetic", "writing", "code", "refuse"} <= \
        {p.kind for p in check}
    assert not {p.prompt for p in check} & {p.prompt for p in rehearse}


def test_an_answer_one_perturbation_changed_is_not_asked_again(monkeypatch) -> None:
    """Stable means surviving every perturbation: the later ones ask only what the
    earlier ones left stable, and the verdict is the same as asking all of them."""
    import torch

    from app.teach.records import Reply
    from backends.training import teach_gate

    prompts = ["What is the capital of France?", "Who wrote Hamlet?", "What is 7 times 8?"]
    base = ["The capital of France is Paris.", "Hamlet was written by Shakespeare.",
            "7 times 8 is 56."]
    # What each perturbation answers (by its seed); None: the base's own answer.
    nudged = {1: {1: "Hamlet was written by Marlowe."},
              2: {2: "7 times 8 is 54."},
              3: {0: "The capital of France is Lyon."}}
    asked: list[list[str]] = []

    def fake_greedy(model, tokenizer, template, messages, device, **_):
        seed = len(asked) + 1
        questions = [m[0]["content"] for m in messages]
        asked.append(questions)
        return [Reply([], [], True, nudged[seed].get(prompts.index(q), base[prompts.index(q)]))
                for q in questions]

    monkeypatch.setattr(teach_gate, "greedy", fake_greedy)
    replies = [Reply([], [], True, text) for text in base]
    teach_gate.mark_stable(torch.nn.Linear(2, 2), None, None, replies, prompts,
                           ["fact", "fact", "arithmetic"], torch.device("cpu"))
    assert asked == [prompts, [prompts[0], prompts[2]], [prompts[0]]]
    assert [r.stable for r in replies] == [False, False, False]
