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

from app.chat_template import ChatTemplate
from app.datasets import Example


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


def assistant_spans(template: ChatTemplate, messages: list[dict[str, str]]
                    ) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns.

    Each span runs from the end of the generation prompt that precedes the reply to the
    end of the turn as the template renders it, so it covers the reply and the
    template's end-of-turn marker (the model must learn to stop).
    """
    full = template.render(messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = template.render(messages[:i], add_generation_prompt=True)
        upto = template.render(messages[:i + 1], add_generation_prompt=False)
        if upto.startswith(prefix) and full.startswith(upto) and len(prefix) >= cursor:
            start, end = len(prefix), len(upto)
        else:
            # Templates that rewrite earlier turns (e.g. drop reasoning) break prefix
            # rendering; fall back to finding the reply text itself.
            start = full.find(message["content"], cursor)
            if start < 0:
                raise ValueError("the chat template does not reproduce the assistant's reply")
            end = start + len(message["content"])
            if template.eos_token and full.startswith(template.eos_token, end):
                end += len(template.eos_token)
        # Whitespace a template puts after the end-of-turn marker is not worth learning.
        while end > start and full[end - 1] in " \n":
            end -= 1
        spans.append((start, end))
        cursor = end
    return full, spans


def tokenize_examples(examples: list[Example], tokenizer: Any, template: ChatTemplate,
                      max_seq_len: int, eos_token: str) -> TokenizedSet:
    records: list[Tokenized] = []
    truncated = dropped = longest = 0
    for example in examples:
        if example.messages is not None:
            text, spans = assistant_spans(template, example.messages)
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
