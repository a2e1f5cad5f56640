"""Settings a person chooses once and expects to find again.

Stored as JSON in the home (``settings.json``), written atomically. Load settings are
the llama.cpp model settings used when none are given; per-model sampling defaults are
remembered so that a model keeps the temperature a person picked for it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.atomic import atomic_write_text
from app.chat.template_choice import CHOICES
from app.inference.protocol import CACHE_TYPES, SamplingParams
from app.side_files import expect, load_json


@dataclass
class LoadSettings:
    """How a model is loaded into llama.cpp."""

    n_ctx: int = 4096
    """Context length in tokens: what the KV cache is sized for."""
    n_gpu_layers: int = 0
    """Layers offloaded to the GPU (-1 for all); 0 runs on the CPU only."""
    n_threads: int | None = None
    """CPU threads; None picks the number of physical cores."""
    flash_attn: bool = False
    """Flash attention (faster, less KV memory, on builds that support it)."""
    cache_type: str = "f16"
    """The KV cache's element type: "f16", or "q8_0" (about half the memory; llama.cpp
    needs flash attention for it, so the worker turns that on)."""
    prompt_lookup: int = 0
    """Prompt-lookup speculative decoding: tokens drafted from the context per step (0:
    off). Off by default: on the starter model it is slower (``hearth bench
    speculative`` measures it on yours), and it keeps logits for every context position
    (n_ctx x vocabulary x 4 bytes)."""

    def __post_init__(self) -> None:
        if self.n_ctx < 256:
            raise ValueError("context length must be at least 256 tokens")
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError("threads must be at least 1")
        if self.cache_type not in CACHE_TYPES:
            raise ValueError(f"KV cache type must be one of {', '.join(CACHE_TYPES)}")
        if not 0 <= self.prompt_lookup <= 32:
            raise ValueError("prompt lookup drafts 0 (off) to 32 tokens")


@dataclass
class Settings:
    load: LoadSettings = field(default_factory=LoadSettings)
    sampling_by_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    ui: dict[str, Any] = field(default_factory=dict)
    template_by_model: dict[str, str] = field(default_factory=dict)
    """The chat template chosen per model (app.chat.template_choice.CHOICES); "auto"
    when absent."""

    def template_for(self, model: str) -> str:
        choice = self.template_by_model.get(model, "auto")
        return choice if choice in CHOICES else "auto"

    def remember_template(self, model: str, choice: str) -> None:
        if choice not in CHOICES:
            raise ValueError(f"unknown chat template choice {choice!r}")
        if choice == "auto":
            self.template_by_model.pop(model, None)
        else:
            self.template_by_model[model] = choice

    def sampling_for(self, model: str) -> SamplingParams:
        remembered = self.sampling_by_model.get(model)
        if not isinstance(remembered, dict):  # load_settings refuses these; belt and braces
            return SamplingParams()
        known = {k: v for k, v in remembered.items()
                 if k in SamplingParams.__dataclass_fields__}
        try:
            return SamplingParams(**known)
        except (TypeError, ValueError):
            return SamplingParams()

    def remember_sampling(self, model: str, sampling: SamplingParams) -> None:
        self.sampling_by_model[model] = asdict(sampling)


def load_settings(path: Path, notices: list[str] | None = None) -> Settings:
    """Read settings; a missing file gives the defaults, a damaged one too (never a crash).

    A file that cannot be understood, wrong-typed entries included (a model's remembered
    sampling that is not an object broke the window's construction), is not silently
    overwritten by the next save: it is kept as ``settings.json.bad-<time>`` and a
    sentence for the person is appended to ``notices`` (:mod:`app.side_files`).
    """
    settings = load_json(path, _parse, "Hearth uses default settings", notices)
    return settings if settings is not None else Settings()


def _parse(raw: Any) -> Settings:
    """Settings from the file's JSON; TypeError or ValueError on anything else."""
    expect(raw, dict, "the file")
    sampling = expect(raw.get("sampling_by_model", {}), dict, "sampling_by_model")
    for model, entry in sampling.items():
        expect(entry, dict, f"sampling_by_model[{model!r}]")
    templates = expect(raw.get("template_by_model", {}), dict, "template_by_model")
    return Settings(load=LoadSettings(**expect(raw.get("load", {}), dict, "load")),
                    sampling_by_model={str(k): dict(v) for k, v in sampling.items()},
                    ui=dict(expect(raw.get("ui", {}), dict, "ui")),
                    template_by_model={str(k): str(v) for k, v in templates.items()})


def save_settings(path: Path, settings: Settings) -> None:
    atomic_write_text(path, json.dumps(asdict(settings), indent=2), private=True)
