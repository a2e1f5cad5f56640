"""Which taught version of each base model the chat uses, and every version's provenance.

A version is a teach run's GGUF adapter, which chat applies live on the base (switching
versions takes milliseconds and needs no second copy of the weights); one click
(:func:`app.finetune.merge.merge_version`) merges it into a stand-alone GGUF. Every
version's adapter is whole: a version continued from another (app.teach.continuing)
starts from that one's LoRA weights and saves all of them, so rolling back is still just
a pointer change.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from app.models.library import Library, ModelRecord, UnknownModel
from app.paths import HearthHome


@dataclass
class Version:
    """One accepted (or kept, not yet accepted) teach result: a library model."""

    name: str
    base: str
    run_id: str
    created_at: str
    corrections: list[int]
    extra: str | None
    settings: dict[str, Any]
    report: dict[str, Any]
    accepted: bool = False
    continued_from: str | None = None
    """The version whose adapter this one's training started from (None: the base)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Base:
    active: str | None = None
    versions: list[Version] = field(default_factory=list)


class VersionStore:
    """Which version of each base model the chat uses; a JSON file in the home.

    Kept apart from the SQLite schema on purpose: it is small, read at chat start, and
    written atomically (write, then rename), so a crash leaves the old or the new state.
    """

    def __init__(self, home: HearthHome) -> None:
        self.path = home.root / "teach" / "versions.json"

    def _load(self) -> dict[str, _Base]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        out = {}
        for base, entry in raw.get("bases", {}).items():
            out[base] = _Base(entry.get("active"),
                              [Version(**v) for v in entry.get("versions", [])])
        return out

    def _save(self, data: dict[str, _Base]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"bases": {b: {"active": e.active,
                                 "versions": [v.to_json() for v in e.versions]}
                             for b, e in data.items()}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2), "utf-8")
        os.replace(tmp, self.path)

    def versions(self, base: str) -> list[Version]:
        entry = self._load().get(base)
        return list(entry.versions) if entry else []

    def active(self, base: str) -> str | None:
        entry = self._load().get(base)
        return entry.active if entry else None

    def base_of(self, name: str) -> str | None:
        """The base a version was taught from (None when ``name`` is not a version)."""
        for base, entry in self._load().items():
            if any(v.name == name for v in entry.versions):
                return base
        return None

    def add(self, version: Version, activate: bool) -> None:
        data = self._load()
        entry = data.setdefault(version.base, _Base())
        entry.versions = [v for v in entry.versions if v.name != version.name] + [version]
        if activate:
            version.accepted = True
            entry.active = version.name
        self._save(data)

    def activate(self, base: str, name: str | None) -> None:
        """Make version ``name`` the one the chat uses, or the plain base (None)."""
        data = self._load()
        entry = data.setdefault(base, _Base())
        if name is not None:
            match = [v for v in entry.versions if v.name == name]
            if not match:
                known = ", ".join(v.name for v in entry.versions) or "none"
                raise ValueError(f"{name!r} is not a version of {base} (versions: {known})")
            match[0].accepted = True
        entry.active = name
        self._save(data)

    def forget(self, base: str, name: str) -> None:
        data = self._load()
        entry = data.get(base)
        if entry is None:
            return
        entry.versions = [v for v in entry.versions if v.name != name]
        if entry.active == name:
            entry.active = None
        self._save(data)


def chat_model(library: Library, versions: VersionStore, record: ModelRecord,
               use_base: bool = False) -> ModelRecord:
    """The model that answers when the person picks ``record``: its active version.

    A version removed from the library falls back to the base, never to an error.
    """
    if use_base:
        return record
    active = versions.active(record.name)
    if active is None:
        return record
    try:
        return library.get(active)
    except UnknownModel:
        return record


