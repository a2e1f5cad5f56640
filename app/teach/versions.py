"""Every taught version of each base model, with its provenance.

A version is a teach run's GGUF adapter, which chat applies live on the base (switching
versions takes milliseconds and needs no second copy of the weights); one click
(:func:`app.finetune.merge.merge_version`) merges it into a stand-alone GGUF. Every
version's adapter is whole: a version continued from another (app.teach.continuing)
starts from that one's LoRA weights and saves all of them, so rolling back is still just
a pointer change: which version the chat uses is the pointer half of the same file,
:class:`app.models.versions.ActiveVersions`, which this store extends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.codec import from_dict, to_dict
from app.finetune.settings import LoraSettings
from app.models.versions import LOST, ActiveVersions
from app.side_files import expect, load_json, save_json
from app.teach.records import GateReport


@dataclass
class Version:
    """One accepted (or kept, not yet accepted) teach result: a library model."""

    name: str
    base: str
    run_id: str
    created_at: str
    corrections: list[int]
    extra: str | None
    settings: LoraSettings
    """What it was trained with (a round continues it only with the same LoRA shape)."""
    report: GateReport
    """The gate's report without each answer (:meth:`GateReport.without_answers`)."""
    accepted: bool = False
    continued_from: str | None = None
    """The version whose adapter this one's training started from (None: the base)."""

    def to_json(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_json(cls, raw: Any) -> Version:
        """A version as saved (read by the run records' tolerant codec, so that versions
        saved by an older Hearth load); TypeError or ValueError when it is not one (the
        file is then damaged)."""
        version = from_dict(cls, expect(raw, dict, "a version"))
        for name in ("name", "base", "run_id", "created_at"):
            expect(getattr(version, name), str, f"a version's {name}")
        expect(version.settings, LoraSettings, "a version's settings")
        expect(version.report, GateReport, "a version's report")
        expect(version.corrections, list, "a version's corrections")
        for name in ("extra", "continued_from"):
            expect(getattr(version, name), (str, type(None)), f"a version's {name}")
        return version


@dataclass
class _Base:
    active: str | None = None
    versions: list[Version] = field(default_factory=list)


class VersionStore(ActiveVersions):
    """Every version of each base model, and which one the chat uses; a JSON file.

    Kept apart from the SQLite schema on purpose: it is small, read at chat start, and
    written atomically (:mod:`app.side_files`: fsynced, then renamed), so a crash leaves
    the old or the new state. It is read while the window is built, so a damaged one is
    kept aside (``versions.json.bad-<time>``) and said, never a failed start; the
    workspace checks it on opening (:meth:`check`) so the person hears it then.
    """

    def check(self) -> None:
        """Read the file once, keeping it aside (and saying so) if it is damaged."""
        self._load()

    def _load(self) -> dict[str, _Base]:
        return load_json(self.path, _parse, LOST, self.notices) or {}

    def _save(self, data: dict[str, _Base]) -> None:
        payload = {"bases": {b: {"active": e.active,
                                 "versions": [v.to_json() for v in e.versions]}
                             for b, e in data.items()}}
        save_json(self.path, payload)

    def versions(self, base: str) -> list[Version]:
        entry = self._load().get(base)
        return list(entry.versions) if entry else []

    def add(self, version: Version, activate: bool) -> None:
        data = self._load()
        entry = data.setdefault(version.base, _Base())
        entry.versions = [v for v in entry.versions if v.name != version.name] + [version]
        if activate:
            version.accepted = True
            entry.active = version.name
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


def _parse(raw: Any) -> dict[str, _Base]:
    """The file's JSON as bases and their versions; TypeError when it is anything else."""
    bases = expect(expect(raw, dict, "the file").get("bases", {}), dict, "bases")
    out = {}
    for base, entry in bases.items():
        expect(entry, dict, f"the entry of {base!r}")
        active = expect(entry.get("active"), (str, type(None)), f"{base!r}'s active version")
        versions = expect(entry.get("versions", []), list, f"{base!r}'s versions")
        out[str(base)] = _Base(active, [Version.from_json(v) for v in versions])
    return out
