"""The questions Hearth derives from a correction: to train on, and to check with.

A person corrects a fact once. Fine-tuning picks a new fact up from many variations of
it (Ovadia et al., EMNLP 2024), and a check that asks the trained question again only
tests memory. So from each corrected question Hearth writes, by itself:

- **variations** to train on: the question in other forms (indirect, imperative, the
  subject first), each answered with the corrected reply;
- **rewordings** to check with: other forms again, never trained on (two families that
  share no form, so the check is held out);
- **neighbours**: the same relation about other, real subjects ("the lighthouse in
  Alexandria" for "the lighthouse on Corvel Island"; "the telephone" for "the
  glimmerloom"). The base model's own answers to some are rehearsed so that they stay
  put; others, never trained on, are the gate's check that the correction did not leak.

The forms are rules on the question's shape (a wh-word, an auxiliary, the rest), not a
model's paraphrase: a 135M model paraphrases badly, and rules are predictable and cheap.
A question they cannot parse gets only the forms that wrap it whole.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from app.teach.records import GeneralPrompt

_WH = ("what", "who", "which", "where", "when", "how many", "how much", "how", "why")
_AUX = ("is", "are", "was", "were", "does", "do", "did", "can", "will", "has", "have")


@dataclass(frozen=True)
class Question:
    """A question split as ``wh be rest?`` ("what" "is" "the capital of X") or, for a
    subject question, ``wh verb rest?`` ("who" "invented" "the glimmerloom"). Questions
    with "does/did/can" are not split: their indirect form needs the verb conjugated."""

    wh: str
    aux: str
    rest: str
    subject_question: bool

    @property
    def indirect(self) -> str:
        """The embedded form: "what the capital of X is", "who invented the loom"."""
        if self.subject_question or not self.aux:
            return f"{self.wh} {self.aux} {self.rest}".replace("  ", " ").strip()
        return f"{self.wh} {self.rest} {self.aux}"


def parse(question: str) -> Question | None:
    q = question.strip().rstrip("?.! ").strip()
    low = q.lower()
    for wh in _WH:
        if not low.startswith(wh + " "):
            continue
        tail = q[len(wh) + 1:].strip()
        head, _, rest = tail.partition(" ")
        if wh in ("which", "what") and head.lower() not in _AUX:
            # "which city is the capital of X": the wh-phrase is two words.
            second, _, after = rest.partition(" ")
            if second.lower() in ("is", "are", "was", "were") and after:
                return Question(f"{wh} {head}", second.lower(), after, False)
        if head.lower() in ("is", "are", "was", "were") and rest:
            return Question(wh, head.lower(), rest, False)
        verb = head.lower() not in _AUX and (wh == "who" or head.lower().endswith(("ed", "s")))
        if wh in ("who", "what", "which") and rest and verb:
            return Question(wh, head, rest, True)
        return None
    return None


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _forms(question: str, family: str) -> list[str]:
    """The question in the forms of one family ("train" or "check")."""
    q = question.strip()
    parsed = parse(q)
    out: list[str] = []
    if parsed is not None:
        ind = parsed.indirect
        rest = parsed.rest
        if family == "train":
            out += [f"Do you know {ind}?", f"Can you tell me {ind}?",
                    f"I would like to know {ind}."]
            if parsed.wh == "what" and parsed.aux in ("is", "are") and not parsed.subject_question:
                out.append(f"Name {rest.removeprefix('the name of ')}.")
            if parsed.wh == "who" and parsed.subject_question:
                out.append(f"Name the person who {parsed.aux} {rest}.")
        else:
            out += [f"I wonder {ind}.", f"Any idea {ind}?"]
            if parsed.wh == "what" and parsed.aux in ("is", "are") and not parsed.subject_question:
                out.append(f"{_cap(rest)}: what {parsed.aux} it?")
            if parsed.wh == "who" and parsed.subject_question:
                out.append(f"Who was it that {parsed.aux} {rest}?")
    elif family == "train":
        out += [f"{q} Please answer briefly.", f"Question: {q}"]
    else:
        out += [f"{q} One sentence, please.", f"Help me with this: {q}"]
    return [o for o in dict.fromkeys(out) if o.lower() != q.lower()]


def variations(question: str, n: int = 4) -> list[str]:
    """Forms of the question to train on (the original is trained as well, apart)."""
    return _forms(question, "train")[:n]


def rewordings(question: str, n: int = 2) -> list[str]:
    """Forms of the question to check with; none of them is ever trained on."""
    return _forms(question, "check")[:n]


# ------------------------------------------------------------------ neighbours


@cache
def _subjects() -> dict[str, Any]:
    text = resources.files("resources").joinpath("teach/subjects.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w'-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w'-]*)*)")


def subject_of(question: str) -> tuple[str, str] | None:
    """The subject to swap and the category of real subjects to swap in, or None.

    The subject is the question's last capitalised name (not its first word); failing
    that, for "who invented the X" kinds, the noun phrase after the verb.
    """
    cats, keys = _subjects()["categories"], _subjects()["keywords"]
    low_words = re.findall(r"[a-z]+", question.lower())
    category: str | None = next((keys[w] for w in low_words if w in keys), None)
    names = [m.group(1) for m in _NAME.finditer(question) if m.start() > 0]
    names = [n for n in names if n not in ("I",)]
    if names:
        name = names[-1]
        if re.search(rf"\bthe {re.escape(name)}", question):
            name = "the " + name  # "the Republic of Tavora" is swapped whole
        return name, category if category is not None and category in cats else "country"
    parsed = parse(question)
    if parsed is not None and parsed.subject_question:
        match = re.match(r"(the\s+[\w' -]+|an?\s+[\w' -]+)$", parsed.rest.strip(), re.I)
        if match:
            return match.group(1), "thing"
    return None


def neighbours(question: str, n: int = 2, skip: int = 0) -> list[str]:
    """The same question about ``n`` real subjects of the same kind.

    ``skip`` moves along the subject list, so that the neighbours rehearsed in training
    and those the gate checks are never the same questions. The order is a function of
    the question (a hash), so a run is reproducible and different questions get
    different neighbours.
    """
    found = subject_of(question)
    if found is None:
        return []
    subject, category = found
    pool = [s for s in _subjects()["categories"][category] if s.lower() != subject.lower()]
    if not pool:
        return []
    start = int(hashlib.sha256(question.encode()).hexdigest(), 16) % len(pool)
    chosen = [pool[(start + skip + i) % len(pool)] for i in range(n)]
    out = []
    for real in chosen:
        swapped = question.replace(subject, real, 1)
        if subject[:1].islower() or real.lower().startswith("the "):
            swapped = re.sub(rf"\b{re.escape(subject)}\b", real, question, count=1)
        # "on Corvel Island" -> "on Alexandria" reads oddly but asks the same relation.
        out.append(swapped)
    return [o for o in dict.fromkeys(out) if o != question]


# ------------------------------------------------------------------ general prompts


@cache
def general_prompts() -> dict[str, tuple[GeneralPrompt, ...]]:
    """The shipped everyday prompts: ``check`` (held out: never trained or rehearsed on)
    and ``rehearse`` (the base's answers to them are mixed into training)."""
    text = resources.files("resources").joinpath("teach/general_prompts.json").read_text(
        "utf-8")
    data = json.loads(text)
    return {part: tuple(GeneralPrompt(p["prompt"], p["kind"]) for p in data[part])
            for part in ("check", "rehearse")}
