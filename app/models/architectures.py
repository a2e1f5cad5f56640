"""The architectures Hearth fine-tunes and exports, and how each is written as GGUF.

A row here is a promise: ``tests/test_architectures.py`` builds a tiny random model of
the architecture, writes it as GGUF the way llama.cpp's converter does, trains LoRA on
it, exports it, and compares llama.cpp's logits with PyTorch's. A base model outside the
table is refused before training starts, with this list in the message, instead of after
minutes of training when the export finds it cannot write the result.

The two transforms are the ones llama.cpp's ``convert_hf_to_gguf.py`` applies and
transformers' GGUF loader undoes: llama-family Q/K rows are permuted, and Gemma's RMS
norm weights are stored as ``1 + w``. The export applies them again on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import ExitCode, HearthError


@dataclass(frozen=True)
class Architecture:
    gguf_name: str
    """``general.architecture`` in a GGUF file."""
    families: str
    """The models people know by name that use it."""
    permute_qk: bool = False
    """llama.cpp's converter permutes the rows of the Q and K projections."""
    norm_shift: float = 0.0
    """Added to every ``*norm.weight`` by the converter (Gemma's ``1 + w``)."""
    chat_families: tuple[str, ...] = ()
    """The families whose chat template a base model without one may get, in order
    (:mod:`app.chat.template_choice`; its vocabulary decides among them)."""


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("llama", "Llama 3.x, SmolLM2, Mistral 7B / Nemo (written as llama)",
                 permute_qk=True, chat_families=("llama3", "chatml")),
    Architecture("qwen2", "Qwen2.5", chat_families=("chatml",)),
    Architecture("qwen3", "Qwen3", chat_families=("chatml",)),
    Architecture("gemma2", "Gemma 2", norm_shift=1.0, chat_families=("gemma",)),
    Architecture("gemma3", "Gemma 3", norm_shift=1.0, chat_families=("gemma",)),
    Architecture("phi3", "Phi-3.5 mini, Phi-4 mini", chat_families=("phi3", "chatml")),
)
"""Mistral models are written by llama.cpp's converter with the ``llama`` architecture
(and its Q/K permutation), so the llama row covers them; a transformers folder of
``model_type`` ``mistral`` is accepted as such (see :data:`HF_MODEL_TYPES`)."""

HF_MODEL_TYPES: dict[str, str] = {
    "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
    "gemma2": "gemma2", "gemma3": "gemma3", "gemma3_text": "gemma3", "phi3": "phi3",
}
"""transformers' ``model_type`` of a safetensors folder, to the row that trains it."""

_BY_GGUF = {a.gguf_name: a for a in ARCHITECTURES}


class UnsupportedArchitecture(HearthError, ValueError):
    """A model Hearth cannot fine-tune and export; the message lists what it can."""

    exit_code = ExitCode.BAD_INPUT


def supported_names() -> str:
    return ", ".join(f"{a.gguf_name} ({a.families})" for a in ARCHITECTURES)


def gguf_name_of(model_type: str) -> str:
    """The GGUF architecture of a transformers ``model_type`` (itself when unknown)."""
    return HF_MODEL_TYPES.get(model_type, model_type)


def architecture(gguf_name: str) -> Architecture:
    """The row for a GGUF architecture, or :class:`UnsupportedArchitecture` saying why."""
    found = _BY_GGUF.get(gguf_name)
    if found is None:
        raise _unsupported(gguf_name)
    return found


def _unsupported(name: str) -> UnsupportedArchitecture:
    return UnsupportedArchitecture(
        f"Hearth cannot fine-tune {name!r} models yet: it trains and exports "
        f"{supported_names()}. Pick a base model of one of these architectures.")
