"""Where Hearth keeps its data.

Everything lives under one home so that a test, a portable install or a person who
wants to move their data can point ``$HEARTH_HOME`` somewhere and find it all there.
Nothing is written outside the home except explicit exports.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(text: str, fallback: str = "model") -> str:
    """``text`` as a file name's stem Hearth may create in its home: the one slug rule.

    Runs of anything but letters, digits, ``.``, ``_`` and ``-`` become one ``-`` (a
    model name or a hub file name may hold ``/``, spaces or worse); leading and trailing
    ``-`` and ``.`` go (no hidden files, no ``..``); nothing left gives ``fallback``.
    A long name is cut to :data:`MAX_STEM` characters with a hash of the whole beside it
    (a file name may have 255 bytes, and Hearth adds suffixes such as ``-f16.gguf``), so
    two long names that differ only at their ends still name two files.
    """
    stem = _UNSAFE.sub("-", text).strip("-.") or fallback
    if len(stem) <= MAX_STEM:
        return stem
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{stem[:MAX_STEM - 11].rstrip('-.')}-{digest}"


MAX_STEM = 120
"""The longest stem :func:`safe_stem` gives: room for Hearth's suffixes within 255 bytes."""


@dataclass(frozen=True)
class HearthHome:
    """The folders of one Hearth home. Build one with :func:`resolve_home`."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def downloads(self) -> Path:
        """Partial downloads; never listed as models until verified and moved."""
        return self.root / "downloads"

    @property
    def database(self) -> Path:
        return self.root / "hearth.db"

    @property
    def settings_file(self) -> Path:
        return self.root / "settings.json"

    @property
    def kernels_file(self) -> Path:
        """Remembered llama.cpp kernel choices for this machine (:mod:`app.inference.kernels`)."""
        return self.root / "kernels.json"

    @property
    def base_model_cache(self) -> Path:
        """Bases converted for training (:func:`conversion_folder`);
        the worker reads ``HEARTH_CACHE`` instead where set (tests and benchmarks share
        one conversion across homes)."""
        return self.root / "cache" / "base-models"

    @property
    def busy(self) -> Path:
        """Thread claims of running heavy work (:mod:`app.machine.threads`)."""
        return self.root / "busy"

    def ensure(self) -> HearthHome:
        private_folder(self.root)
        for folder in (self.models, self.adapters, self.datasets, self.runs, self.logs,
                       self.downloads):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def file_key(path: Path) -> str:
    """A cache key for what was computed from a model file: its path, size and mtime (a
    replaced file gets a new key; hashing gigabytes for it would take longer)."""
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


def conversion_folder(gguf: Path, cache_dir: Path) -> Path:
    """Where a GGUF's conversion for training is kept (``cache_dir``: the home's
    :attr:`HearthHome.base_model_cache`, or ``HEARTH_CACHE``'s)."""
    return cache_dir / file_key(gguf)


def is_converted(gguf: Path, cache_dir: Path) -> bool:
    """Whether the next run on ``gguf`` skips the conversion (half a minute)."""
    try:
        return (conversion_folder(gguf, cache_dir) / "complete").exists()
    except OSError:
        return False


def private_folder(root: Path) -> None:
    """Make the home readable by its owner only (0700), as the API key always was.

    The folder holds every conversation; made with the umask (0755), any local user
    could read ``hearth.db`` where home folders are traversable (finding S12). A new
    folder is made 0700; an existing one is tightened when it is a Hearth home (its
    database is there) or empty, never a folder of the person's that they pointed
    ``$HEARTH_HOME`` at. Everything inside is then out of others' reach.
    """
    if os.name != "posix":
        return  # per-user profile folders are private already
    try:
        root.mkdir(mode=0o700)
        return
    except FileExistsError:
        pass
    except FileNotFoundError:
        root.parent.mkdir(parents=True, exist_ok=True)
        root.mkdir(mode=0o700, exist_ok=True)
        return
    info = root.stat()
    if (info.st_mode & 0o077 and info.st_uid == os.geteuid()
            and ((root / "hearth.db").exists() or not any(root.iterdir()))):
        root.chmod(0o700)


def private_file(path: Path) -> None:
    """Create ``path`` owner-only (0600) if it is missing, or tighten it (see
    :func:`open_private`).

    SQLite creates its WAL and shared-memory files with the database's permissions, so
    making ``hearth.db`` this way first keeps all three private.
    """
    os.close(open_private(path))


def open_private(path: Path) -> int:
    """A read-write descriptor of ``path``, created owner-only (0600) or tightened to it.

    A symbolic link or anything but a regular file there raises OSError saying so: it
    is never followed (a link planted as ``hearth.lock`` made Hearth truncate and
    overwrite its target, finding S12).
    """
    flags = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(f"{path} is a symbolic link; Hearth does not follow links in "
                          "its data folder (remove it and start again)") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file; remove it and start again")
        if os.name == "posix" and info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> HearthHome:
    """The home given explicitly, else ``$HEARTH_HOME``, else the platform's data dir."""
    if explicit is not None:
        root = Path(explicit)
    elif os.environ.get("HEARTH_HOME"):
        root = Path(os.environ["HEARTH_HOME"])
    else:
        root = Path(platformdirs.user_data_dir("hearth", appauthor=False))
    return HearthHome(root.expanduser().resolve()).ensure()
