"""A model's chat template, and a conversation rendered through it.

The same renderer serves inference and fine-tuning, so a model is trained on exactly the
text layout it is later prompted with: :func:`render_parts` gives the worker its prompt
with the person's text kept apart from the template's own (where control tokens may
be), :func:`assistant_spans` gives training and the Fine-tune tab's preview the replies
the model learns. Every render runs in the bounded sandbox of
:mod:`app.chat.template_sandbox`, whose errors and limits are named here too.

A model without a template gets ChatML, labelled ``fallback:chatml`` wherever the
template source is shown, so a person can tell why replies might look off.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.chat.template_sandbox import (
    DEFAULT_LIMITS,
    ChatTemplateError,
    RenderLimits,
    TemplateCancelled,
    render_bounded,
)

__all__ = ["FALLBACK_CHATML", "ChatTemplate", "ChatTemplateError", "RenderLimits",
           "TemplateCancelled", "assistant_spans", "render_parts"]

FALLBACK_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # "gguf", "tokenizer_config" or "fallback:chatml"
    text: str
    bos_token: str = ""
    eos_token: str = ""

    @classmethod
    def from_metadata(cls, template: str | None, bos_token: str = "", eos_token: str = ""
                      ) -> ChatTemplate:
        if template and template.strip():
            return cls("gguf", template, bos_token, eos_token)
        return cls("fallback:chatml", FALLBACK_CHATML, bos_token, eos_token)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               limits: RenderLimits = DEFAULT_LIMITS,
               should_stop: Callable[[], bool] | None = None,
               tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text, rendered under ``limits``: ChatTemplateError (TemplateCancelled
        on a stop) is all it raises (:func:`app.chat.template_sandbox.render_bounded`).
        ``tools`` fills the template's ``tools`` variable (left undefined when None)."""
        variables: dict[str, Any] = {
            "messages": messages, "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token, "eos_token": self.eos_token}
        if tools is not None:
            variables["tools"] = tools
        return render_bounded(self.text, variables, limits, should_stop)


def render_parts(template: ChatTemplate, messages: list[dict[str, Any]],
                 add_generation_prompt: bool = True, limits: RenderLimits = DEFAULT_LIMITS,
                 should_stop: Callable[[], bool] | None = None,
                 guard: Callable[[str], bool] | None = None,
                 tools: list[dict[str, Any]] | None = None) -> list[tuple[str, bool]]:
    """The rendered prompt as ``(text, is_content)`` parts, in order.

    Only the template's own text may hold control tokens (``<|im_end|>``); a message's
    content is data, even when someone types or pastes a marker into it. So the template
    runs with such a content replaced by a unique placeholder, and the rendered text is
    cut at the placeholders: what lies between is the template's, what they stand for
    is the person's (``is_content``).

    ``guard(content)`` says which contents need it (by default every non-empty one);
    the others are rendered as they are, so a template that looks into a content (to
    drop an old turn's reasoning, say) still sees the real text. A guarded content is
    only seen as its placeholder: a marker in it is never read as a marker.
    """
    guard = guard or bool
    nonce = secrets.token_hex(8).upper()
    marks = [f"HEARTHMSG{nonce}N{i}END" for i in range(len(messages))]
    stand_ins = [{**m, "content": mark} if guard(m["content"]) else m
                 for m, mark in zip(messages, marks, strict=True)]
    text = template.render(stand_ins, add_generation_prompt, limits, should_stop, tools)
    parts: list[tuple[str, bool]] = []
    at = 0
    for found in re.finditer(rf"HEARTHMSG{nonce}N(\d+)END", text):
        if found.start() > at:
            parts.append((text[at:found.start()], False))
        parts.append((messages[int(found.group(1))]["content"], True))
        at = found.end()
    if at < len(text):
        parts.append((text[at:], False))
    return [(t, c) for t, c in parts if t]


def assistant_spans(template: ChatTemplate, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None
                    ) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns.

    Each span runs from the end of the generation prompt that precedes the reply to the
    end of the turn as the template renders it, so it covers the reply and the
    template's end-of-turn marker (the model must learn to stop). The training worker
    puts its loss on these spans and the Fine-tune tab's preview highlights them, so
    both use this one function. ``messages`` and ``tools`` are as the chat renders them
    (:func:`app.chat.tool_prompt.shape`): a reply that calls tools is learned as the
    template (or Hearth's fallback prompt) writes the call.
    """
    full = template.render(messages, add_generation_prompt=False, tools=tools)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = template.render(messages[:i], add_generation_prompt=True, tools=tools)
        upto = template.render(messages[:i + 1], add_generation_prompt=False, tools=tools)
        if upto.startswith(prefix) and full.startswith(upto) and len(prefix) >= cursor:
            start, end = len(prefix), len(upto)
        else:
            # Templates that rewrite earlier turns (e.g. drop reasoning) break prefix
            # rendering; fall back to finding the reply text itself.
            start = full.find(message["content"], cursor)
            if start < 0:
                raise ChatTemplateError("the chat template does not reproduce the "
                                        "assistant's reply")
            end = start + len(message["content"])
            if template.eos_token and full.startswith(template.eos_token, end):
                end += len(template.eos_token)
        # Whitespace a template puts after the end-of-turn marker is not worth learning.
        while end > start and full[end - 1] in " \n":
            end -= 1
        spans.append((start, end))
        cursor = end
    return full, spans
