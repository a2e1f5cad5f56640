"""Where text meets tokens in the inference worker: control tokens and stop strings.

A message's text must never become one of the model's control tokens (a stranger's
"<|im_end|>" typed into a chat stays text), and a reply's text that could still turn
into a stop string is held back until it is clear. Both are pure functions of text,
kept here so the worker reads as the protocol it serves.
"""

from __future__ import annotations

import re
from typing import Any


class ControlTokens:
    """A model's control-token texts: where to cut a prompt, and which message contents
    must be kept away from the template (see render_parts)."""

    def __init__(self, llm: Any, ids: dict[str, int]) -> None:
        self.llm = llm
        self.ids = ids
        # Longest first, as llama.cpp matches them.
        texts = sorted(ids, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, texts))) if texts else None
        self.longest = max(map(len, texts), default=0)
        self.heads = {t[:k] for t in texts for k in range(1, len(t))}
        self.tails = {t[k:] for t in texts for k in range(1, len(t))}

    def could_form(self, text: str) -> bool:
        """Whether ``text`` holds a control token's text, or could make one with the
        template's text around it (it ends with a token's start, begins with its end,
        or is a piece of one)."""
        if not text or self.pattern is None:
            return False
        if self.pattern.search(text):
            return True
        reach = min(self.longest, len(text) + 1)
        return (any(text[-k:] in self.heads for k in range(1, reach))
                or any(text[:k] in self.tails for k in range(1, reach))
                or (len(text) < self.longest and any(text in t for t in self.ids)))

    def defuse(self, value: Any) -> Any:
        """``value`` (text, or lists and dicts of it) with every control token's text
        broken by a zero-width space. For untrusted text a template writes itself, where
        the content guard cannot reach: tool definitions and a call's arguments."""
        if isinstance(value, str):
            if self.pattern is None:
                return value
            return self.pattern.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:],
                                    value)
        if isinstance(value, list):
            return [self.defuse(v) for v in value]
        if isinstance(value, dict):
            return {self.defuse(k): self.defuse(v) for k, v in value.items()}
        return value


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def split_stop(pending: str, stops: list[str]) -> tuple[str, bool]:
    """The part of ``pending`` safe to show, and whether a stop string was reached.

    Text that could be the start of a stop string is held back until it is clear.
    """
    if not stops:
        return pending, False
    for stop in stops:
        at = pending.find(stop)
        if at >= 0:
            return pending[:at], True
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(pending)), 0, -1):
            if pending.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return pending[:len(pending) - hold], False
