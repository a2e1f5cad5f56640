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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.chat.template import FALLBACK_CHATML, ChatTemplate
from app.models.architectures import ARCHITECTURES


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



def choose_template(file_template: str | None, architecture: str,
                    has_token: Callable[[str], bool], choice: str = "auto",
                    bos_token: str = "", eos_token: str = "") -> ChatTemplate:
    """The template to use; its ``source`` says where it came from, for the person."""
    if choice not in CHOICES:
        choice = "auto"
    if choice == "raw":
        return ChatTemplate("raw", RAW_TEMPLATE, bos_token, eos_token)
    if choice in FAMILIES:
        return ChatTemplate(f"chosen:{choice}", FAMILIES[choice].template, bos_token,
                            eos_token)
    if file_template and file_template.strip():
        return ChatTemplate("gguf", file_template, bos_token, eos_token)
    row = _BY_GGUF.get(architecture)
    for name in row.chat_families if row is not None else ():
        if all(has_token(marker) for marker in FAMILIES[name].markers):
            return ChatTemplate(f"family:{name}", FAMILIES[name].template, bos_token,
                                eos_token)
    return ChatTemplate("raw", RAW_TEMPLATE, bos_token, eos_token)


def end_of_turn(template: ChatTemplate) -> str | None:
    """The family's end-of-turn text for a family or chosen template (a stop string)."""
    name = template.source.partition(":")[2]
    family = FAMILIES.get(name) if template.source.startswith(("family:", "chosen:")) \
        else None
    return family.end_of_turn if family is not None else None
