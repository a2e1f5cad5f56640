"""Which model the chat loads for a base model: the base itself, or its active taught version.

Teach (:mod:`app.teach.versions`) keeps every version of a base in ``teach/versions.json``
with where it came from; the chat needs only two things from that file: which version of
each base answers, and which names are versions of which base. That half is read and
written here, beside :mod:`app.models.live`, so that the chat (the window's, ``hearth
chat``, the server) depends on the model room and not on Teach, and Teach's store builds
on it. The file is read while the window is built: a damaged one is kept aside
(``versions.json.bad-<time>``, :mod:`app.side_files`) and said, and the chat loads the
plain base; never a failed start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.errors import ExitCode, HearthError
from app.models.library import Library, ModelRecord, UnknownModel
from app.paths import HearthHome
from app.side_files import expect, load_json, save_json

LOST = ("Hearth starts with no taught versions in use; the taught models stay in the "
        "library (Teach can make one the chat's version again)")
"""What the person is told when versions.json is damaged: the versions' models stay."""


class UnknownVersion(HearthError, ValueError):
    """A name that is not a version of the base it was given for."""

    exit_code = ExitCode.BAD_INPUT


def versions_file(home: HearthHome) -> Path:
    return home.root / "teach" / "versions.json"


class ActiveVersions:
    """Which version of each base model the chat uses (the file's ``active`` pointers).

    Each call reads the file afresh: Teach, the chat and the CLI change it, and it is a
    few kilobytes. Writes are atomic and fsynced (:func:`app.side_files.save_json`).
    """

    def __init__(self, home: HearthHome, notices: list[str] | None = None) -> None:
        self.path = versions_file(home)
        self.notices = notices

    def _bases(self) -> dict[str, Any]:
        """The file's bases, checked as far as the chat reads them; {} when missing or
        damaged (then kept aside)."""
        raw = load_json(self.path, _pointers, LOST, self.notices)
        return raw["bases"] if raw is not None else {}

    def active(self, base: str) -> str | None:
        entry = self._bases().get(base)
        return entry.get("active") if entry else None

    def base_of(self, name: str) -> str | None:
        """The base a version was taught from (None when ``name`` is not a version)."""
        for base, entry in self._bases().items():
            if any(v["name"] == name for v in entry.get("versions", [])):
                return base
        return None

    def base_name(self, name: str) -> str:
        """The base ``name`` was taught from, or ``name`` itself when it is not a
        version: what a model picked by any of its names teaches and compares."""
        return self.base_of(name) or name

    def activate(self, base: str, name: str | None) -> None:
        """Make version ``name`` the one the chat uses, or the plain base (None)."""
        bases = self._bases()
        entry = bases.setdefault(base, {"active": None, "versions": []})
        if name is not None:
            match = [v for v in entry.get("versions", []) if v["name"] == name]
            if not match:
                known = ", ".join(v["name"] for v in entry.get("versions", [])) or "none"
                raise UnknownVersion(f"{name!r} is not a version of {base} (versions: "
                                     f"{known})")
            match[0]["accepted"] = True
        entry["active"] = name
        save_json(self.path, {"bases": bases})


def _pointers(raw: Any) -> dict[str, Any]:
    """The file's JSON if its pointers and names are what Hearth wrote; TypeError if not."""
    bases = expect(expect(raw, dict, "the file").get("bases", {}), dict, "bases")
    for base, entry in bases.items():
        expect(entry, dict, f"the entry of {base!r}")
        expect(entry.get("active"), (str, type(None)), f"{base!r}'s active version")
        for version in expect(entry.get("versions", []), list, f"{base!r}'s versions"):
            expect(expect(version, dict, "a version").get("name"), str, "a version's name")
    return {"bases": bases}


def chat_model(library: Library, versions: ActiveVersions, record: ModelRecord,
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
