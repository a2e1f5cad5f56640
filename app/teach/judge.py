"""Judging free-running answers the way a person reads them.

The gate compares what the base model answered with what the taught version answers,
both generated greedily to the end of the turn. Teacher-forced token agreement counts a
refusal in place of an answer, or another name, as one changed token in thirty; these
judgements look at what changed in substance instead:

- :func:`carries`: the answer says what a correction says (its distinctive words);
  :func:`same_calls`, for a correction of a tool call: the answer makes that call;
- :func:`is_refusal`: the answer declines ("I cannot help with that.");
- :func:`departs`: the taught answer departs from the base's in substance — it refuses
  where the base answered (or the reverse), loops, drops or replaces the base's named
  entities and numbers, leaks a correction's words, or answers something else;
- :func:`loops`: the answer repeats itself (a version that never stops).

The measure was calibrated on the cases it exists for (BENCHMARKS.md, "Teach, judged on
answers"): a refusal collapse and leaked names count as changed; the same fact in other
words ("Paris is the capital of France." / "The capital of France is Paris.") does not.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from app.chat.tools import read_calls, tool_from

if TYPE_CHECKING:
    from app.teach.records import TeachCase

STOPWORDS = frozenset({
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "of", "in", "on", "at", "to",
    "for", "and", "or", "but", "it", "its", "this", "that", "with", "as", "by", "from", "i",
    "you", "he", "she", "we", "they", "my", "your", "our", "their", "me", "him", "her", "them",
    "his", "hers", "not", "no", "yes", "do", "does", "did", "so", "if", "than", "then",
    "there", "here", "what", "which", "who", "whom", "how", "why", "when", "where", "can",
    "could", "would", "should", "will", "called", "name", "named", "s", "t", "one", "also",
    "very", "some", "any", "all", "about", "into", "up", "out", "just", "like", "has",
    "have", "had", "these", "those", "tell", "please", "know", "sure"})

_REFUSAL = re.compile(
    r"\bi\s*(?:cannot|can't|can not|won't|will not|am unable to|'m unable to|am not able to"
    r"|'m not able to|am not allowed to|'m not allowed to)\s+(?:help|assist|provide|answer"
    r"|do that|comply|fulfil|fulfill|support|give|share|create|write|tell|engage|discuss"
    r"|generate|offer)\b"
    r"|\bi(?:'m| am) sorry,? but\b|\bsorry,? but i\b|\bas an ai\b|\bi must decline\b"
    r"|\bi (?:do not|don't) feel comfortable\b|\bcan(?:no|')t (?:help|assist) with\b",
    re.IGNORECASE)
_INSULT = re.compile(
    r"\b(idiot|idiots|stupid|moron|morons|dumb|dumbass|fool|fools|imbecile|loser|losers|"
    r"shut up|pathetic|worthless|ignorant|brainless|clueless|retard\w*|useless person)\b",
    re.IGNORECASE)
FACTUAL = ("fact", "arithmetic")
"""The kinds of prompt with one right answer, judged on what the answer names."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_NUMBER_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
                 "eleven": "11", "twelve": "12", "twenty": "20", "hundred": "100"}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS and len(w) > 1}


def distinctive(chosen: str, rejected: str, question: str) -> list[str]:
    """The words that make a correction a correction.

    Those of the corrected reply that neither the rejected reply nor the question already
    contain ("quillport" in "The capital of Zorbania is Quillport."); when there are none,
    the reply's content words.
    """
    common = set(words(rejected)) | set(words(question)) | STOPWORDS
    key = [w for w in dict.fromkeys(words(chosen)) if w not in common]
    if not key:
        key = [w for w in dict.fromkeys(words(chosen)) if w not in STOPWORDS] or words(chosen)
    return key


def carries(answer: str, chosen: str, rejected: str, question: str) -> bool:
    """Whether ``answer`` says what the correction says: at least 70 % of its distinctive
    words (all of them when there are one or two)."""
    key = distinctive(chosen, rejected, question)
    if not key:
        return False
    have = set(words(answer))
    hits = sum(w in have for w in key)
    return hits == len(key) if len(key) <= 2 else hits / len(key) >= 0.7


def same_calls(answer: str, calls: str, tools: str) -> bool:
    """Whether ``answer`` makes the corrected ``calls`` (OpenAI's list as JSON text): read
    back with the chat's call reader (:func:`app.chat.tools.read_calls`, every family's
    format), the same tools in the same order, with JSON-equal arguments."""
    offered = [tool_from(t["function"]) for t in json.loads(tools or "[]")]
    want = [(c["function"]["name"], json.loads(c["function"].get("arguments") or "{}"))
            for c in json.loads(calls or "[]")]
    got = [(c.name, json.loads(c.arguments)) for c in read_calls(answer, offered).calls]
    return bool(want) and got == want


def answered(case: TeachCase, answer: str) -> bool:
    """Whether ``answer`` is the correction's: its calls when it makes some, else its
    words (:func:`carries`). Learned, reworded and the early stop all judge by this."""
    if case.calls:
        return same_calls(answer, case.calls, case.tools)
    return carries(answer, case.chosen, case.rejected, case.question)


def is_refusal(text: str) -> bool:
    """A reply that declines. Only its opening counts: an answer that later says "I
    cannot stress enough…" is still an answer."""
    return bool(_REFUSAL.search(" ".join(sentences(text)[:2])[:200]))


def insults(text: str) -> bool:
    return bool(_INSULT.search(text))


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def loops(text: str, min_words: int = 4) -> bool:
    """Whether the text repeats a sentence, or a run of ``min_words``+ words, three times."""
    said = Counter(s.lower() for s in sentences(text) if len(words(s)) >= 3)
    if said and said.most_common(1)[0][1] >= 2 and len(said) <= 3:
        return True
    w = words(text)
    grams = Counter(tuple(w[i:i + min_words]) for i in range(len(w) - min_words + 1))
    return bool(grams) and grams.most_common(1)[0][1] >= 3


def key_terms(text: str) -> list[str]:
    """Numbers and named things (capitalised words not opening a sentence) in ``text``,
    in the order they are said."""
    out: list[str] = []
    for sentence in sentences(text):
        for match in re.finditer(r"\d+(?:[.,]\d+)*|[A-Za-z][A-Za-z'-]*", sentence):
            token = match.group(0)
            low = token.lower()
            if token[0].isdigit():
                out.append(token.replace(",", ""))
            elif low in _NUMBER_WORDS:
                out.append(_NUMBER_WORDS[low])
            elif match.start() > 0 and token[0].isupper() and low not in STOPWORDS \
                    and token != "I":
                out.append(low.strip("'"))
    return list(dict.fromkeys(out))


def _opening(text: str, n: int = 2) -> str:
    return " ".join(sentences(text)[:n])


def leak(base: str, tuned: str, keys: Iterable[list[str]]) -> list[str] | None:
    """The first correction's distinctive words that ``tuned`` says and ``base`` did not."""
    have, had = set(words(tuned)), set(words(base))
    for key in keys:
        if not key:
            continue
        hits = [w for w in key if w in have]
        enough = len(hits) == len(key) if len(key) <= 2 else len(hits) / len(key) >= 0.7
        if enough and not all(w in had for w in hits):
            return key
    return None


def departs(base: str, tuned: str, kind: str = "fact", question: str = "",
            keys: Iterable[list[str]] = ()) -> str | None:
    """Why the taught answer differs from the base's in substance, or None when it does not.

    ``kind`` says what the prompt asks for. Only facts and arithmetic have one answer:
    there what the base's first sentence names first (or its number) must still be said,
    and no new name or number may take its place. A poem, a how-to, an explanation or
    advice told in other words is no harm (a small model words them differently after
    any change, measured in ``hearth bench teach``); a refusal, a loop, a leak or an
    answer off the question's topic are. ``keys`` are
    the corrections' distinctive words (:func:`distinctive`): a taught answer that says
    one correction's where the base did not has leaked it.
    """
    if is_refusal(tuned) and not is_refusal(base):
        return "now refuses"
    if is_refusal(base) and not is_refusal(tuned):
        return "no longer refuses"
    if loops(tuned) and not loops(base):
        return "repeats itself"
    asked = set(words(question))
    leaked = leak(base, tuned, [[w for w in k if w not in asked] for k in keys])
    if leaked:
        return "says “" + " ".join(leaked) + "” from a correction"
    if kind not in FACTUAL:
        topic = content_words(question) & content_words(base)
        if topic and not topic & content_words(tuned):
            return "answers off the topic"
        return None
    before = [t for t in key_terms(_opening(base, 1)) if t not in asked]
    if before:
        # What the base's first sentence names first is its answer; the rest of a small
        # model's sentence is detail it would tell differently under any small change.
        have = set(key_terms(tuned)) | set(words(tuned))
        if not any(t in have for t in before[:2]):
            return "no longer says " + ", ".join(before[:2])
        return None
    new = set(key_terms(_opening(tuned, 1))) - set(key_terms(base)) - set(words(base)) - asked
    if new:
        return "now says " + ", ".join(sorted(new))
    a, b = content_words(_opening(base, 1)), content_words(_opening(tuned, 1))
    if a and b and len(a & b) / len(a | b) < 0.2:
        return "answers differently"
    return None


ALWAYS_HARM = ("now refuses", "no longer refuses", "repeats itself")
"""Changes that count even where the base's own answer is unstable (a coin toss under a
knowledge-free perturbation): they are harm whatever the base would have said."""


def counts(why: str | None, stable: bool) -> str | None:
    """``why`` when it counts as a change: always on a stable answer; on an unstable one
    only a refusal, a loop or a correction's words leaking in."""
    if why is None or stable:
        return why
    return why if why in ALWAYS_HARM or why.endswith("from a correction") else None
