"""Turning checked dataset records into token ids and loss masks, in the worker.

A chat record is rendered with the base model's own chat template (the same sandboxed
renderer the inference worker uses), so the model learns exactly the layout it is
later prompted with, end-of-turn token included. Only the assistant's replies carry
loss: every other token is context. Records longer than ``max_seq_len`` are cut, and
the cut is counted and reported, never silent.

A dataset is a stranger's text, like a chat message: a record that holds the text of a
control token ("<|im_end|>") is tokenized as that text, never as the token, as the
inference worker does for prompts (``render_parts``). Otherwise a dataset could teach
the model to end its turn, or open a system turn, wherever it likes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.chat.template import ChatTemplate, assistant_spans
from app.chat.tool_prompt import shape
from app.finetune.datasets import Example
from backends.inference.token_text import ControlTokens

Span = tuple[int, int]


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
    controls = control_tokens(tokenizer)
    for example in examples:
        text, spans, data = _layout(example, template, eos_token, controls.could_form,
                                    controls.defuse)
        if last_turn_only and example.messages is not None:
            spans = spans[-1:]
        ids, offsets = encode(tokenizer, text, data, controls)
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


def control_tokens(tokenizer: Any) -> ControlTokens:
    """The tokenizer's special added tokens (what it would parse out of any text)."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return ControlTokens(tokenizer, {t.content: i for i, t in added.items()
                                     if getattr(t, "special", False) and t.content})


def _layout(example: Example, template: ChatTemplate, eos_token: str,
            guard: Callable[[str], bool], defuse: Callable[[Any], Any]
            ) -> tuple[str, list[Span], list[Span]]:
    """The record's text, the spans that carry loss, and the spans of the person's
    text that could hold or form a control token (which must stay text).

    Such a message is rendered as a unique stand-in, so the template never reads its
    markers either, and its text is put back after rendering, the spans moved with it.
    """
    if example.messages is None:
        body = example.text or ""
        text = body + eos_token
        return text, [(0, len(text))], [(0, len(body))] if guard(body) else []
    # As the chat renders a prompt (one path, app.chat.tool_prompt.shape): a record with
    # tools gets them the way this template takes them, its calls written as this family
    # writes calls, so what is learned is what the chat's call reader reads back. Plain
    # records come out as they went in.
    shaped, tools = shape(example.messages, example.tools, template.text, defuse)
    nonce = secrets.token_hex(8).upper()
    kept: dict[str, str] = {}
    stand_ins = []
    for i, message in enumerate(shaped):
        if guard(message["content"]):
            mark = f"HEARTHDATA{nonce}N{i}END"
            kept[mark] = message["content"]
            message = {**message, "content": mark}
        stand_ins.append(message)
    rendered, spans = assistant_spans(template, stand_ins, tools)
    if not kept:
        return rendered, spans, []
    pieces, data, moves = [], [], [(0, 0)]  # moves: (stand-in position, shift from there)
    at = shift = 0
    for found in re.finditer(rf"HEARTHDATA{nonce}N\d+END", rendered):
        content = kept[found.group(0)]
        pieces += [rendered[at:found.start()], content]
        data.append((found.start() + shift, found.start() + shift + len(content)))
        shift += len(content) - len(found.group(0))
        moves.append((found.end(), shift))
        at = found.end()
    pieces.append(rendered[at:])

    def move(x: int) -> int:
        return x + next(d for end, d in reversed(moves) if end <= x)

    return "".join(pieces), [(move(s), move(e)) for s, e in spans], data


def encode(tokenizer: Any, text: str, data: list[Span], controls: ControlTokens
           ) -> tuple[list[int], list[Span]]:
    """Token ids and character offsets of ``text``, where ``data`` is plain text.

    Without such spans this is the tokenizer's own call. With them, the text is cut at
    the control tokens outside ``data`` and each run between is tokenized with special
    tokens split (so a marker in it is ordinary tokens), as llama.cpp's ``special=False``.
    """
    if not data or controls.pattern is None:
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    ids: list[int] = []
    offsets: list[Span] = []
    run = 0  # where the plain run being gathered starts

    def plain(end: int) -> None:
        if end > run:
            enc = tokenizer(text[run:end], add_special_tokens=False,
                            split_special_tokens=True, return_offsets_mapping=True)
            ids.extend(enc["input_ids"])
            offsets.extend((s + run, e + run) for s, e in enc["offset_mapping"])

    bounds = [0, *(x for span in data for x in span), len(text)]
    for start, end in zip(bounds[::2], bounds[1::2], strict=True):  # the template's text
        for found in controls.pattern.finditer(text, start, end):
            plain(found.start())
            ids.append(controls.ids[found.group(0)])
            offsets.append((found.start(), found.end()))
            run = found.end()
    plain(len(text))
    head, tail = _added_around(tokenizer)
    return ([*head, *ids, *tail],
            [(0, 0)] * len(head) + offsets + [(len(text), len(text))] * len(tail))


def _added_around(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer adds before and after a text (BOS, say), as it adds them."""
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    return [], []
