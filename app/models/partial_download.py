"""A download in progress, as it lies on disk between attempts, restarts and processes.

Each partial download is three files in ``downloads/``, named by the expected SHA-256:
``<sha256>.part`` (the bytes so far), ``<sha256>.json`` (the sidecar: repo, file, pinned
commit, expected size and hash, so the download can resume after a restart and be
listed in the Models tab) and, while a transfer runs, ``<sha256>.lock`` (an OS lock, so
two windows, or a window and the CLI, never append to the same partial file). The
transfer that writes them is :class:`app.models.download.Download`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.atomic import atomic_write_text
from app.models.hub import HubError, HubFile, quant_from_filename
from app.paths import HearthHome


@dataclass
class PendingDownload:
    """What the sidecar of a partial download records, so it can resume after a restart."""

    repo: str
    filename: str
    revision: str
    sha256: str
    size: int
    started_at: str
    done: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.size if self.size else 0.0


def pending_downloads(home: HearthHome) -> list[PendingDownload]:
    """Partial downloads left by a pause, a dropped connection or a closed app."""
    found = []
    for sidecar in sorted(home.downloads.glob("*.json")):
        pending = read_sidecar(sidecar)
        if pending is not None:
            part = sidecar.with_suffix(".part")
            pending.done = part.stat().st_size if part.exists() else 0
            found.append(pending)
    return found


def read_sidecar(path: Path) -> PendingDownload | None:
    try:
        raw = json.loads(path.read_text("utf-8"))
        return PendingDownload(repo=str(raw["repo"]), filename=str(raw["filename"]),
                               revision=str(raw["revision"]), sha256=str(raw["sha256"]),
                               size=int(raw["size"]), started_at=str(raw["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_sidecar(path: Path, f: HubFile) -> None:
    data = {"repo": f.repo, "filename": f.filename, "revision": f.revision,
            "sha256": f.sha256, "size": f.size,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_text(path, json.dumps(data, indent=2), private=True)


def hub_file_from_pending(pending: PendingDownload) -> HubFile:
    """Rebuild the :class:`HubFile` of a partial download from its sidecar (to resume)."""
    return HubFile(repo=pending.repo, filename=pending.filename, size=pending.size,
                   sha256=pending.sha256, revision=pending.revision,
                   quant=quant_from_filename(pending.filename))


@contextlib.contextmanager
def exclusive(lock_path: Path, filename: str) -> Iterator[None]:
    """Hold an OS lock for one file's download, so two windows or a window and the CLI
    never append to the same partial file. The lock dies with the process, so a crash
    leaves nothing stale; the lock file itself is removed on the way out."""
    fh = lock_path.open("a+b")
    try:
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise HubError(f"{filename} is already being downloaded by another Hearth "
                           "window or command; wait for it or cancel it there") from exc
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
    finally:
        fh.close()
