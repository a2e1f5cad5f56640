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
