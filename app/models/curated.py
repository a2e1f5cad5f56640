"""The recommended models shown before a search, and what to try after the starter.

The list lives in ``resources/curated_models.json`` (title, size, licence, what each is
good at, and its GGUF architecture). Whether Hearth can fine-tune one is not written in
the list: it is asked of :mod:`app.models.architectures`, the one table of what Hearth
trains, so the two cannot disagree when a row is added there.

The starter model (SmolLM2-135M-Instruct, bundled so the first start needs no network)
is a demo: it answers simply and is often wrong. :func:`starter_note` says so and names
the list's ``after_starter`` model as the next one to try.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from app.models.architectures import UnsupportedArchitecture, architecture
from app.units import MiB, format_bytes

log = logging.getLogger("hearth.hub")


@dataclass(frozen=True)
class CuratedModel:
    """A recommended model from ``resources/curated_models.json``."""

    repo: str
    file: str
    title: str
    parameters: str
    architecture: str
    """Its GGUF ``general.architecture``: decides :attr:`trainable`."""
    approx_size_mb: int
    licence: str
    good_at: str

    @property
    def trainable(self) -> bool:
        """Whether Hearth's Fine-tune tab can train it (its architecture is in the table)."""
        try:
            architecture(self.architecture)
        except UnsupportedArchitecture:
            return False
        return True

    @property
    def size_text(self) -> str:
        return f"~{format_bytes(self.approx_size_mb * MiB)}"


def _raw() -> dict[str, Any]:
    from importlib import resources

    return json.loads((resources.files("resources") / "curated_models.json")
                      .read_text("utf-8"))


def load_curated() -> list[CuratedModel]:
    """The curated list shipped in ``resources/``; empty (never a crash) if it is damaged."""
    try:
        return [CuratedModel(**{k: m[k] for k in CuratedModel.__dataclass_fields__})
                for m in _raw()["models"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the curated model list could not be read: %s", exc)
        return []


def after_starter() -> CuratedModel | None:
    """The model to try once the demo starter has shown what Hearth does."""
    try:
        repo = _raw().get("after_starter")
    except (OSError, ValueError) as exc:
        log.warning("the curated model list could not be read: %s", exc)
        return None
    return next((m for m in load_curated() if m.repo == repo), None)


def starter_note() -> str:
    """One line for wherever the starter model is shown."""
    line = ("SmolLM2-135M is a 135-million-parameter demo model: it answers simply and is "
            "often wrong.")
    nxt = after_starter()
    if nxt is None:
        return line + " Try a bigger model from Models → Discover on Hugging Face."
    return (f"{line} Next, try {nxt.title} ({nxt.size_text}) from Models → Discover on "
            "Hugging Face.")
