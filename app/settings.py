"""Settings a person chooses once and expects to find again.

Stored as JSON in the home (``settings.json``), written atomically. Load settings are
the llama.cpp model settings used when none are given; per-model sampling defaults are
remembered so that a model keeps the temperature a person picked for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.atomic import atomic_write_text
from app.chat.template_choice import CHOICES
from app.codec import from_dict, to_dict
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
class WindowState:
    """Where the person left the window, restored at the next start."""

    geometry: str | None = None
    """Qt's saved window geometry, base64."""
    chat_splitter: list[int] | None = None
    """The widths of the chat page's three panes."""
    settings_panel: bool = True
    """Whether the chat's settings panel is open."""
    conversation: int | None = None
    """The conversation last shown."""
    finetune_run_to_offer: str | None = None
    """The run a window close (or a crash) stopped, offered for Resume at the next start
    (:mod:`app.finetune.runs.resume`)."""


@dataclass
class ServerSettings:
    """The local OpenAI-compatible server (:mod:`app.serve`), as the person left it."""

    on: bool = False
    """Serve the chat's model from the start."""
    port: int | None = None
    """None: the server's default port."""

    def __post_init__(self) -> None:
        if self.port is not None and not 1024 <= self.port <= 65535:
            raise ValueError("the server's port must be between 1024 and 65535")


@dataclass
class Settings:
    load: LoadSettings = field(default_factory=LoadSettings)
    sampling_by_model: dict[str, SamplingParams] = field(default_factory=dict)
    ui: WindowState = field(default_factory=WindowState)
    server: ServerSettings = field(default_factory=ServerSettings)
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
        """A copy: what the caller changes is remembered only through
        :meth:`remember_sampling`."""
        return _copy(self.sampling_by_model.get(model) or SamplingParams())

    def remember_sampling(self, model: str, sampling: SamplingParams) -> None:
        self.sampling_by_model[model] = _copy(sampling)


def _copy(sampling: SamplingParams) -> SamplingParams:
    return replace(sampling, stop=list(sampling.stop))


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
    """Settings from the file's JSON (the settings' own codec: :mod:`app.codec`,
    which refuses a wrong-typed entry); TypeError or ValueError on anything else."""
    expect(raw, dict, "the file")
    window = expect(raw.get("ui", {}), dict, "ui")
    if "server" not in raw:  # before 2026-12: the server's switch and port were window state
        old = {"on": window.get("server_on"), "port": window.get("server_port")}
        raw = {**raw, "server": {k: v for k, v in old.items() if v is not None}}
    return from_dict(Settings, raw)


def save_settings(path: Path, settings: Settings) -> None:
    atomic_write_text(path, json.dumps(to_dict(settings), indent=2), private=True)
