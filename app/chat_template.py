"""Rendering a model's chat template, safely.

Chat templates are Jinja programs shipped inside model files by strangers, so they run
only in Jinja's immutable sandbox (jinja2 >= 3.1.6, which closes the known sandbox
escapes). The same renderer serves inference and fine-tuning, so a model is trained on
exactly the text layout it is later prompted with.

A model without a template gets ChatML, labelled ``fallback:chatml`` wherever the
template source is shown, so a person can tell why replies might look off.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

FALLBACK_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    """The template failed to render; the message names the template's complaint."""


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

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True
               ) -> str:
        try:
            return _compile(self.text).render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template failed: {exc}") from exc


def assistant_spans(template: ChatTemplate, messages: list[dict[str, str]]
                    ) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns.

    Each span runs from the end of the generation prompt that precedes the reply to the
    end of the turn as the template renders it, so it covers the reply and the
    template's end-of-turn marker (the model must learn to stop). The training worker
    puts its loss on these spans and the Fine-tune tab's preview highlights them, so
    both use this one function.
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


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def _compile(text: str):  # noqa: ANN202 - jinja's Template type is not worth importing
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(text)
    except TemplateError as exc:
        raise ChatTemplateError(f"the model's chat template does not parse: {exc}") from exc
