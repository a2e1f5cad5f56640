"""Settings a person chooses once and expects to find again.

Stored as JSON in the home (``settings.json``), written atomically. Load settings are
the llama.cpp model settings used when none are given; per-model sampling defaults are
remembered so that a model keeps the temperature a person picked for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.atomic import atomic_write_text
from app.chat.template_choice import CHOICES
from app.inference.protocol import CACHE_TYPES, SamplingParams


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
        known = {k: v for k, v in self.sampling_by_model.get(model, {}).items()
                 if k in SamplingParams.__dataclass_fields__}
        try:
            return SamplingParams(**known)
        except (TypeError, ValueError):
            return SamplingParams()

    def remember_sampling(self, model: str, sampling: SamplingParams) -> None:
        self.sampling_by_model[model] = asdict(sampling)


def load_settings(path: Path, notices: list[str] | None = None) -> Settings:
    """Read settings; a missing file gives the defaults, a damaged one too (never a crash).

    A file that cannot be understood is not silently overwritten by the next save: it is
    kept as ``settings.json.bad-<time>`` and a sentence for the person is appended to
    ``notices``.
    """
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        if notices is not None:
            notices.append(f"{path} cannot be read ({exc.strerror or exc}); Hearth uses "
                           "default settings this time")
        return Settings()
    try:
        raw = json.loads(text)
        return Settings(load=LoadSettings(**raw.get("load", {})),
                        sampling_by_model=dict(raw.get("sampling_by_model", {})),
                        ui=dict(raw.get("ui", {})),
                        template_by_model={str(k): str(v) for k, v in
                                           dict(raw.get("template_by_model", {})).items()})
    except (ValueError, TypeError, AttributeError) as exc:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        kept = path.with_name(f"{path.name}.bad-{stamp}")
        try:
            os.replace(path, kept)
            where = f"it was kept as {kept.name}"
        except OSError:
            where = "it could not be moved aside"
        if notices is not None:
            notices.append(f"{path.name} could not be read ({type(exc).__name__}: "
                           f"{str(exc)[:200]}); {where} and Hearth uses default settings")
        return Settings()


def save_settings(path: Path, settings: Settings) -> None:
    atomic_write_text(path, json.dumps(asdict(settings), indent=2))
