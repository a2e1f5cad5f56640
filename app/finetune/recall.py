"""Does the fine-tuned model answer its own data as trained? The recall check's terms.

A falling loss is not knowledge: the balanced preset, given twelve records of three new
facts, ended at validation loss 1.97 and answered none of the three, and the run read as
a success (issue 23, item 8; measured again in BENCHMARKS.md, "Fine-tune recall"). So
after training, the worker asks the tuned model some of the dataset's own questions —
held-out validation records first, then training records — greedily and to the end of
its turn, and judges each answer with Teach's judge (:func:`app.teach.judge.carries`:
does it say the trained reply's distinctive words?);
and it asks Teach's 120 held-out everyday prompts and counts the answers that departed
from the base's in substance (the same general-change check as Teach's gate). The
generation runs in the worker (:mod:`backends.training.recall`); this module chooses the
questions, judges the answers and holds the typed report that the summary, the tab and
the CLI show. Qt-free and torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.finetune.dataset_records import Example
from app.finetune.datasets import Dataset
from app.finetune.settings import preset_label
from app.machine.profile import Machine
from app.paths import HearthHome
from app.teach import judge
from app.teach.probes import general_prompts
from app.teach.reference import is_cached, reference_cache

MAX_ASKED = 24
"""Questions asked of the tuned model at most: one generation batch, so the check's cost
does not grow with the dataset (BENCHMARKS.md, "Fine-tune recall")."""
MAX_HELDOUT = MAX_ASKED // 2
"""Held-out questions among them at most, so training questions are always asked too
(a large dataset's validation split alone would fill every place)."""
TARGET_WORDS = 40
"""The trained reply is judged by its opening, about as many words as the answer's 64
generated tokens hold: a long reply's later sentences cannot be in a cut answer."""
SHOWN_TEXT = 300
"""Characters of a question, reply or answer kept in the report (it is shown, not
re-judged)."""
GENERAL_BUDGET_S = 300.0
"""Seconds the everyday check may take (timed on its first batch); beyond it, it is
skipped and the summary says so (a 1B model on a small CPU)."""
RECALL_S_PER_GPARAM = 1150.0
"""The whole check's seconds per billion parameters on 2 CPU cores, the base's answers
cached: 156 s for SmolLM2-135M measured (BENCHMARKS.md, "Fine-tune recall"). A first
guess; the worker then uses what the last run on this machine measured."""
GENERAL_SHARE = 0.8
"""The everyday prompts' share of that time (120 answers of 40 tokens against 24 of 64)."""
REFERENCE_PASSES = 4
"""Generations per everyday prompt the first time on a base: its answer, and three
perturbed answers to tell a stable one (teach_gate.Perturbed)."""
GPU_S = 20.0
"""On a GPU the check is a few batches of a few seconds each (a guess: this project's
CPU machine measured the rest; the worker then keeps the machine's own rate)."""

Messages = list[dict[str, str]]


@dataclass
class Question:
    """One record asked again: the conversation before its last reply, and that reply."""

    prompt: Messages
    reply: str
    heldout: bool
    line: int = 0

    @property
    def question(self) -> str:
        """What the person asked (every user turn), for the judge's distinctive words."""
        return " ".join(m["content"] for m in self.prompt if m["role"] == "user")

    @property
    def target(self) -> str:
        """The reply's opening (:data:`TARGET_WORDS`), whole sentences where they fit."""
        kept: list[str] = []
        count = 0
        for sentence in judge.sentences(self.reply) or [self.reply]:
            n = len(sentence.split())
            if kept and count + n > TARGET_WORDS:
                break
            kept.append(" ".join(sentence.split()[:TARGET_WORDS]))
            count += n
        return " ".join(kept)

    def key(self) -> list[str]:
        """The reply's distinctive words: what an answer must say, and what must not leak
        into the everyday answers."""
        return judge.distinctive(self.target, "", self.question)


@dataclass
class RecallExample:
    """One question, the trained reply and the tuned model's answer (shown, untrusted)."""

    question: str = ""
    trained: str = ""
    answer: str = ""
    carried: bool = False
    heldout: bool = False
    line: int = 0


@dataclass
class RecallReport:
    """``summary.recall``: how many of the dataset's questions the result answers as
    trained, and how many everyday answers changed. ``skipped`` says why nothing was
    asked (plain text data); ``general_skipped`` why the everyday prompts
    were not."""

    asked: int = 0
    answered: int = 0
    heldout_asked: int = 0
    heldout_answered: int = 0
    general_changed: int = 0
    general_total: int = 0
    general_unstable: int = 0
    """Everyday prompts whose base answer is a coin toss (only a refusal, a loop or a
    leak counts there; see :class:`backends.training.teach_gate.Perturbed`)."""
    examples: list[RecallExample] = field(default_factory=list)
    changed_examples: list[dict[str, str]] = field(default_factory=list)
    """``{prompt, base, answer, why}`` of the everyday answers that changed (a few)."""
    seconds: float = 0.0
    skipped: str | None = None
    general_skipped: str | None = None

    def __post_init__(self) -> None:
        # summary.json holds the examples as JSON objects (the codec rebuilds one level).
        self.examples = [e if isinstance(e, RecallExample) else RecallExample(**{
            k: v for k, v in e.items() if k in RecallExample.__dataclass_fields__})
            for e in self.examples]

    @property
    def training_asked(self) -> int:
        return self.asked - self.heldout_asked

    @property
    def training_answered(self) -> int:
        return self.answered - self.heldout_answered

    def line(self) -> str:
        """One line for the summary: "Answers as trained: 2 of 3 held-out questions, ..."."""
        if self.skipped:
            return f"Answers as trained: not checked ({self.skipped})"
        parts = []
        if self.heldout_asked:
            parts.append(f"{self.heldout_answered} of {self.heldout_asked} held-out "
                         "questions")
        if self.training_asked:
            parts.append(f"{self.training_answered} of {self.training_asked} training "
                         "questions")
        text = "Answers as trained: " + ", ".join(parts)
        return text + "; " + self.general_line()

    def general_line(self) -> str:
        return "everyday answers " + self.general_text()

    def general_text(self) -> str:
        if self.general_skipped:
            return f"not checked ({self.general_skipped})"
        return f"changed {self.general_changed} of {self.general_total}"

    def warning(self) -> str | None:
        """Why the run must not read as plain success, with what to do; None when it
        answers some of its questions as trained."""
        if self.skipped or not self.asked or self.answered:
            return None
        return (f"It answers none of the {self.asked} questions of its own data as trained: "
                "the training did not take. For new facts, choose the "
                f"“{preset_label('facts')}” preset (or more epochs and a higher learning "
                "rate) and run again.")


def choose_questions(val: list[Example], train: list[Example], limit: int = MAX_ASKED
                     ) -> list[Question]:
    """Up to ``limit`` records whose last turn is a reply: held-out validation records
    first (at most :data:`MAX_HELDOUT`, more when there are few training records), then
    training records spread evenly over the file. A validation record that is also
    trained on (Teach's ``holdout=False``) counts as a training question; a prompt asked
    twice is asked once."""
    trained = {e.key() for e in train}
    heldout = _asked([e for e in val if e.key() not in trained], True)
    training = _asked(train, False)
    n_train = min(len(training), max(limit - len(heldout), limit - MAX_HELDOUT))
    chosen = heldout[:limit - n_train] + _spread(training, n_train)
    seen: set[str] = set()
    out = []
    for q in chosen:
        key = repr(q.prompt)
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out


def _asked(examples: list[Example], heldout: bool) -> list[Question]:
    out = []
    for e in examples:
        m = e.messages
        if m and m[-1].get("role") == "assistant" and len(m) > 1 and \
                str(m[-1].get("content", "")).strip():
            out.append(Question(prompt=m[:-1], reply=m[-1]["content"], heldout=heldout,
                                line=e.line))
    return out


def _spread(items: list[Question], n: int) -> list[Question]:
    """``n`` items taken evenly across ``items`` (the first twelve of a file are often
    one topic)."""
    if n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def judge_answers(questions: list[Question], answers: list[str]) -> list[RecallExample]:
    """Each answer judged against its trained reply's opening (:func:`judge.carries`)."""
    return [RecallExample(question=q.question[:SHOWN_TEXT], trained=q.reply[:SHOWN_TEXT],
                          answer=a[:SHOWN_TEXT], heldout=q.heldout, line=q.line,
                          carried=judge.carries(a, q.target, "", q.question))
            for q, a in zip(questions, answers, strict=True)]


def report_of(examples: list[RecallExample], general: dict[str, Any] | None,
              seconds: float) -> RecallReport:
    """The counts; ``general`` is the everyday check's ``{changed, total, unstable,
    examples}`` or ``{skipped: why}``."""
    general = general or {"skipped": "not run"}
    return RecallReport(
        asked=len(examples), answered=sum(e.carried for e in examples),
        heldout_asked=sum(e.heldout for e in examples),
        heldout_answered=sum(e.heldout and e.carried for e in examples),
        general_changed=int(general.get("changed", 0)),
        general_total=int(general.get("total", 0)),
        general_unstable=int(general.get("unstable", 0)),
        changed_examples=list(general.get("examples", []))[:5],
        general_skipped=general.get("skipped"), examples=examples,
        seconds=round(seconds, 1))


def check_seconds(n_params: int, cores: int, gpu: bool, cached: bool = True,
                  rate: float | None = None) -> float:
    """How long the check will take, for the estimate: ``rate`` seconds per billion
    parameters (this machine's last run; else :data:`RECALL_S_PER_GPARAM` for 2
    cores), five times the everyday part when the base's answers are not ``cached``,
    and never more than the questions, the everyday part's first batch (64 of 120) and
    :data:`GENERAL_BUDGET_S` (beyond it the worker skips the rest)."""
    if gpu:
        return GPU_S
    per_g = rate if rate is not None else RECALL_S_PER_GPARAM * 2 / max(1, cores)
    seconds = per_g * n_params / 1e9
    questions, general = seconds * (1 - GENERAL_SHARE), seconds * GENERAL_SHARE
    first = general * 64 / 120
    general *= 1 if cached else 1 + REFERENCE_PASSES
    return questions + min(general, first + GENERAL_BUDGET_S)


def planned_seconds(home: HearthHome, base_path: Path, n_params: int, machine: Machine,
                    dataset: Dataset) -> float:
    """The check's seconds in the estimate before Start: none for data without chat
    records (nothing to ask); else at this machine's last measured speed, pricing the
    base's everyday answers when they are not cached yet."""
    from app.finetune.phase_times import PhaseTimes, phase_times_file  # it imports records

    if not any(e.messages for e in dataset.examples):
        return 0.0
    prompts = [g.prompt for g in general_prompts()["check"]]
    rate = PhaseTimes.of_machine(phase_times_file(home), machine.has_gpu).recall_rate
    return check_seconds(n_params, machine.cpu_cores, machine.has_gpu,
                         is_cached(reference_cache(home, base_path), prompts), rate=rate)


NO_CHAT = ("the data has no chat records to ask (plain text): there is no reply to "
           "compare an answer with")
