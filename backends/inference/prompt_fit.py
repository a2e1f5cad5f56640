"""Fitting a conversation into the context: drop the oldest turns, in linear time.

The worker keeps the system prompt and the newest message and drops whole turns from
the front until the prompt fits. Doing that by rendering and tokenizing the whole
conversation again after each dropped turn costs ~n/2 full renders: quadratic, so one
API request of a few thousand short messages, or a long imported chat continued in the
window, kept the worker busy for minutes (finding S5: 2,001 messages took 100 s).

Here every message is tokenized once. One render with each content replaced by a
numbered marker shows which template text belongs to which message; the template's
pieces and each content are tokenized once, and cumulative sums from the end estimate
every possible cut at once. The estimate ignores the few tokens that merge across a
seam, so the exact prompt is still rendered and tokenized to decide, but only near the
estimated cut (a few suffixes about the size of the context), galloping outwards if the
estimate was off. The result is the same cut the old one-turn-at-a-time loop found.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.chat.template import ChatTemplate, TemplateCancelled

Parts = list[tuple[str, bool]]


@dataclass
class ConversationFit:
    """One conversation to fit into ``budget`` tokens; :meth:`fit` does it."""

    messages: list[dict[str, Any]]
    continue_last: bool
    budget: int
    n_ctx: int
    render: Callable[[list[dict[str, str]]], Parts]
    """The exact prompt of some messages as ``(text, is_content)`` parts."""
    tokenize: Callable[[Parts], list[int]]
    """Token ids of such parts, with the model's BOS where it wants one."""
    template: ChatTemplate
    should_stop: Callable[[], bool]
    tools: list[dict[str, Any]] | None = None
    """The template's ``tools`` variable: definitions cost tokens too."""
    _exact: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("the conversation is empty")
        self.first = 1 if self.messages[0]["role"] == "system" else 0
        self.starts = self._starts()

    def _starts(self) -> list[int]:
        """Where the kept messages begin after 0, 1, 2... drops (a drop is a whole turn:
        the oldest message and its reply); the newest message (and its partial reply,
        when continuing) is never dropped."""
        keep_tail = 2 if self.continue_last else 1
        n, s = len(self.messages), self.first
        starts = [s]
        while n - s > keep_tail:
            s += 2 if (n - s > keep_tail + 1
                       and self.messages[s + 1]["role"] == "assistant") else 1
            starts.append(s)
        return starts

    def fit(self) -> tuple[list[int], int]:
        """The prompt's tokens and how many messages were dropped from the front."""
        if self._fits(0):
            return self._exact[0], 0
        j = self._search(self._estimate())
        return self._exact[j], self.starts[j] - self.first

    # ----------------------------------------------------------------- exact

    def _kept(self, j: int) -> list[dict[str, str]]:
        return self.messages[:self.first] + self.messages[self.starts[j]:]

    def _fits(self, j: int) -> bool:
        if j not in self._exact:
            self._exact[j] = self.tokenize(self.render(self._kept(j)))
        return len(self._exact[j]) <= self.budget

    def _search(self, guess: int) -> int:
        """The fewest drops that fit, given that none do not and ``guess`` is likely."""
        last = len(self.starts) - 1
        bad, good, step = 0, None, 1
        probe = min(max(guess, 1), last)
        while good is None:  # forwards from the guess until something fits
            if self._fits(probe):
                good = probe
            elif probe >= last:
                self._too_long(last)
            else:
                bad, probe, step = probe, min(probe + step, last), step * 2
        step = 1
        while good - bad > 1:  # backwards while fewer drops still fit
            probe = max(good - step, bad + 1)
            if not self._fits(probe):
                bad = probe
                break
            good, step = probe, step * 2
        while good - bad > 1:
            middle = (good + bad) // 2
            if self._fits(middle):
                good = middle
            else:
                bad = middle
        return good

    def _too_long(self, last: int) -> None:
        raise ValueError(
            f"the message is {len(self._exact[last])} tokens long but the context holds "
            f"{self.n_ctx} (with {self.n_ctx - self.budget} kept for the reply): shorten "
            "it, or reload the model with a longer context")

    # -------------------------------------------------------------- estimate

    def _estimate(self) -> int:
        """The fewest drops whose estimated prompt fits (the last when none does)."""
        costs, fixed = self._costs()
        suffix = [0] * (len(costs) + 1)
        for i in range(len(costs) - 1, -1, -1):
            suffix[i] = suffix[i + 1] + costs[i]
        head = fixed + sum(costs[:self.first])
        for j, start in enumerate(self.starts):
            if head + suffix[start] <= self.budget:
                return j
        return len(self.starts) - 1

    def _costs(self) -> tuple[list[int], int]:
        """Estimated tokens of each message (its content and the template text before
        it), and of what every cut keeps: BOS, the template's closing text, a reply
        being continued."""
        messages, extra = self.messages, 0
        counted: dict[tuple[str, bool], int] = {}
        bos = len(self.tokenize([]))

        def count(text: str, is_content: bool) -> int:
            key = (text, is_content)
            if key not in counted:
                if self.should_stop():
                    raise TemplateCancelled("fitting the conversation was stopped")
                counted[key] = max(0, len(self.tokenize([key])) - bos)
            return counted[key]

        if self.continue_last and messages[-1]["role"] == "assistant":
            messages, extra = messages[:-1], count(messages[-1]["content"], True)
        nonce = secrets.token_hex(8).upper()
        marked = [{**m, "content": f"HEARTHFIT{nonce}N{i}END"} for i, m in enumerate(messages)]
        text = self.template.render(marked, add_generation_prompt=True,
                                    should_stop=self.should_stop, tools=self.tools)
        costs = [0] * len(self.messages)
        at = 0
        for found in re.finditer(rf"HEARTHFIT{nonce}N(\d+)END", text):
            i = int(found.group(1))
            costs[i] += count(text[at:found.start()], False) + count(
                messages[i]["content"], True)
            at = found.end()
        return costs, bos + count(text[at:], False) + extra
