"""Turning checked dataset records into token ids and loss masks, in the worker.

A chat record is rendered with the base model's own chat template (the same sandboxed
renderer the inference worker uses), so the model learns exactly the layout it is
later prompted with, end-of-turn token included. Only the assistant's replies carry
loss: every other token is context. Records longer than ``max_seq_len`` are cut, and
the cut is counted and reported, never silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.chat.template import ChatTemplate, assistant_spans
from app.finetune.datasets import Example


@dataclass
class Tokenized:
    """One record: ``ids`` and, per token, whether the model must predict it."""

    ids: list[int]
    target: list[bool]
    line: int
    truncated: bool = False

    @property
    def n_targets(self) -> int:
        # Token 0 is never predicted: nothing comes before it.
        return sum(self.target[1:])


@dataclass
class TokenizedSet:
    records: list[Tokenized]
    truncated: int
    dropped_no_target: int
    longest: int

    @property
    def tokens(self) -> int:
        return sum(len(r.ids) for r in self.records)

    @property
    def target_tokens(self) -> int:
        return sum(r.n_targets for r in self.records)


def tokenize_examples(examples: list[Example], tokenizer: Any, template: ChatTemplate,
                      max_seq_len: int, eos_token: str, last_turn_only: bool = False
                      ) -> TokenizedSet:
    """Token ids with the loss on the assistant turns (and their end of turn).

    ``last_turn_only``: only the final reply is learned (Teach: the corrected reply; the
    earlier replies of its conversation are context the model already wrote).
    """
    records: list[Tokenized] = []
    truncated = dropped = longest = 0
    for example in examples:
        if example.messages is not None:
            text, spans = assistant_spans(template, example.messages)
            if last_turn_only:
                spans = spans[-1:]
        else:
            text = (example.text or "") + eos_token
            spans = [(0, len(text))]
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = enc["offset_mapping"]
        target = [any(s <= start < e for s, e in spans) and end > start
                  for start, end in offsets]
        longest = max(longest, len(ids))
        cut = len(ids) > max_seq_len
        if cut:
            truncated += 1
            ids, target = ids[:max_seq_len], target[:max_seq_len]
        record = Tokenized(ids=ids, target=target, line=example.line, truncated=cut)
        if record.n_targets == 0:
            dropped += 1
            continue
        records.append(record)
    return TokenizedSet(records=records, truncated=truncated, dropped_no_target=dropped,
                        longest=longest)
