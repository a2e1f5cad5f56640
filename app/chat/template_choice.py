"""Which chat template a model is spoken to with, when its file has none or the person picks.

A base model (Gemma 3 270M, a Llama base) usually ships without a chat template.
Wrapping its text in ChatML, as Hearth once did, makes it answer with ChatML's markers
("<|im_end|> <|im_start|>admin"). Instead:

- ``auto`` (the default): the file's own template; else the template of the
  architecture's family (:mod:`app.models.architectures`) when the vocabulary holds that
  family's turn markers, labelled ``family:<name>``; else ``raw``.
- ``raw``: plain completion. The conversation's texts are joined by blank lines after
  the BOS token and the model continues the last one, which is what a base model was
  trained to do.
- a family name (``chatml``, ``llama3``, ``gemma``, ``phi3``): that template, whatever
  the file says, for a person who knows better than the file.

The choice is made per model in its load settings and travels in the worker's ``Load``.
:func:`template_source` is the one decision: the worker applies it (with llama.cpp's
vocabulary) and the Models tab names it (with the file's, :func:`source_for_file`), so
the tab says what the chat will really use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.chat.template import FALLBACK_CHATML, ChatTemplate
from app.models.architectures import ARCHITECTURES
from app.models.gguf_vocab import token_ids


@dataclass(frozen=True)
class Family:
    template: str
    markers: tuple[str, ...]
    """Special tokens the family's vocabulary has; without them the template is noise."""
    end_of_turn: str


FAMILIES: dict[str, Family] = {
    "chatml": Family(FALLBACK_CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama3": Family(
        "{{ bos_token }}{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}"
        "{{ m['content'] | trim }}{{ '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        ("<|start_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
    # Gemma has no system role: the system prompt opens the first user turn.
    "gemma": Family(
        "{{ bos_token }}"
        "{% if messages and messages[0]['role'] == 'system' %}"
        "{% set sys = messages[0]['content'] | trim + '\\n\\n' %}{% set rest = messages[1:] %}"
        "{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}"
        "{% for m in rest %}"
        "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\\n' }}"
        "{{ (sys if loop.first else '') + m['content'] | trim }}{{ '<end_of_turn>\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
        ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "phi3": Family(
        "{% for m in messages %}"
        "{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
        ("<|user|>", "<|end|>"), "<|end|>"),
}

RAW_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['content'] }}"
    "{% if not loop.last %}{{ '\\n\\n' }}{% endif %}{% endfor %}"
)

_BY_GGUF = {row.gguf_name: row for row in ARCHITECTURES}

CHOICES = ("auto", "raw", *FAMILIES)
"""What a person can pick for a model; ``auto`` is the default."""



def template_source(has_file_template: bool, architecture: str,
                    has_token: Callable[[str], bool], choice: str = "auto") -> str:
    """Where the template comes from: "raw", "chosen:<family>", "gguf" (the file's own)
    or "family:<family>" (the file has none; the vocabulary holds the family's markers)."""
    if choice not in CHOICES:
        choice = "auto"
    if choice == "raw":
        return "raw"
    if choice in FAMILIES:
        return f"chosen:{choice}"
    if has_file_template:
        return "gguf"
    row = _BY_GGUF.get(architecture)
    for name in row.chat_families if row is not None else ():
        if all(has_token(marker) for marker in FAMILIES[name].markers):
            return f"family:{name}"
    return "raw"


def choose_template(file_template: str | None, architecture: str,
                    has_token: Callable[[str], bool], choice: str = "auto",
                    bos_token: str = "", eos_token: str = "") -> ChatTemplate:
    """The template to use; its ``source`` says where it came from, for the person."""
    own = bool(file_template and file_template.strip())
    source = template_source(own, architecture, has_token, choice)
    kind, _, name = source.partition(":")
    text = (file_template or "") if kind == "gguf" else \
        FAMILIES[name].template if name else RAW_TEMPLATE
    return ChatTemplate(source, text, bos_token, eos_token)


FAMILY_NAMES = {"chatml": "ChatML", "llama3": "Llama 3", "gemma": "Gemma", "phi3": "Phi-3"}


def describe_source(source: str) -> str:
    """A template source in words, as the Models tab and the model bar say it."""
    kind, _, name = source.partition(":")
    family = FAMILY_NAMES.get(name, name)
    return {"gguf": "the model's own",
            "family": f"{family} (its family's; the file has none)",
            "chosen": f"{family} (chosen)"}.get(kind, "none: plain text completion")


def source_for_file(path: str | Path, has_file_template: bool, architecture: str,
                    choice: str = "auto") -> str:
    """:func:`template_source` for a GGUF file, without loading it: a family's markers
    are looked up in the file's vocabulary only when they decide."""
    row = _BY_GGUF.get(architecture)
    families = row.chat_families if row is not None else ()
    needed = choice in ("auto", "") and not has_file_template and families
    markers = {m for name in families for m in FAMILIES[name].markers} if needed else set()
    present = set(token_ids(path, markers)) if markers else set()
    return template_source(has_file_template, architecture, present.__contains__, choice)


def end_of_turn(template: ChatTemplate) -> str | None:
    """The family's end-of-turn text for a family or chosen template (a stop string)."""
    name = template.source.partition(":")[2]
    family = FAMILIES.get(name) if template.source.startswith(("family:", "chosen:")) \
        else None
    return family.end_of_turn if family is not None else None
