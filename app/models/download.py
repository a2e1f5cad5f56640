"""One GGUF file from the Hugging Face hub into the library: resumable, verified, atomic.

Downloads are the part people complain about in other apps, so this module owns the
whole transfer instead of delegating to ``hf_hub_download``:

* **Resumable.** Bytes go to ``downloads/<sha256>.part`` next to a small JSON sidecar;
  pausing, a dropped connection or closing the app leaves both behind, and the next
  attempt for the same file continues with an HTTP ``Range`` request. What a partial
  download leaves on disk (the sidecar, the list of pending downloads, the one-writer
  lock) is :mod:`app.models.partial_download`; this module is the transfer itself.
* **Verified.** The expected SHA-256 and size come from the hub's LFS metadata. The
  bytes are hashed as they arrive (a resumed download re-reads only what it kept);
  the complete file must match, and parse with :func:`app.models.gguf_file.read_gguf`,
  before it is moved (one atomic rename) into ``models/`` and registered. A file
  without a hub hash is refused rather than trusted; a mismatch deletes the partial.
* **Never half-listed.** Partial files live outside ``models/`` and only the final
  rename makes a file visible, so the library never shows an unfinished model.
* **Qt-free.** Progress goes to a plain callback; :class:`Download` is paused or
  cancelled from another thread through flags the transfer loop checks per chunk.

What to download (search, a repository's files, the curated list) is :mod:`app.models.hub`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from app.atomic import fsync_dir
from app.models.gguf_file import GGUFError, read_gguf
from app.models.hub import HubError, HubFile, hub_endpoint, hub_errors
from app.models.library import Library, ModelRecord
from app.models.partial_download import exclusive, read_sidecar, write_sidecar
from app.models.provenance import Provenance
from app.paths import HearthHome, safe_stem
from app.units import format_bytes

log = logging.getLogger("hearth.hub")

# Room left free on the disk beyond the file itself (filesystem metadata, the database).
DISK_MARGIN = 64 << 20
_RETRIES = 3  # reconnect attempts after a dropped connection that made progress


class HashMismatch(HubError):
    """The downloaded bytes are not the file the hub described (corrupt or tampered)."""


class DiskFull(HubError):
    """There is not enough space for the download (before starting or while writing)."""


class DownloadPaused(HubError):
    """The transfer stopped on request; the partial file is kept for resuming."""


class DownloadCancelled(HubError):
    """The transfer stopped on request and everything it wrote was deleted."""


@dataclass
class DownloadProgress:
    filename: str
    done: int
    total: int
    speed_bps: float
    """Bytes per second over the last few seconds (0 until measured)."""
    eta_s: float | None
    """Seconds left at the current speed; None while unknown."""
    resumed_from: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


ProgressCallback = Callable[[DownloadProgress], None]


class Download:
    """One file's transfer into the library; :meth:`run` blocks, the rest is thread-safe.

    ``pause()`` stops at the next chunk and keeps the partial file and its sidecar;
    ``cancel()`` stops and deletes them. :meth:`run` then raises
    :class:`DownloadPaused` or :class:`DownloadCancelled`. Calling :meth:`run` again
    (or building a new ``Download`` for the same file, even in a new process) resumes.
    """

    def __init__(self, home: HearthHome, library: Library, file: HubFile,
                 progress: ProgressCallback | None = None, *, endpoint: str | None = None,
                 token: str | bool | None = None, chunk_size: int | None = None,
                 name: str | None = None, progress_interval: float = 0.1) -> None:
        if not file.sha256 or not file.size:
            raise HubError(f"the hub gives no SHA-256 for {file.filename}, so Hearth cannot "
                           "verify it and will not download it")
        if not re.fullmatch(r"[0-9a-f]{64}", file.sha256):
            raise HubError(f"the hub sent a malformed SHA-256 for {file.filename}")
        if file.is_split:
            raise HubError(f"{file.filename} is part {file.split_part} of a model split "
                           f"into {file.split_total} files; split models are not supported "
                           "yet, choose a smaller quantization")
        self.home = home
        self.library = library
        self.file = file
        self.progress = progress
        self.endpoint = (endpoint or hub_endpoint()).rstrip("/")
        self.token = token
        # None: write what the network delivers as it arrives, so pause, cancel and
        # progress react within one network read even on a slow line.
        self.chunk_size = chunk_size
        self.name = name
        self.progress_interval = progress_interval
        self._pause = threading.Event()
        self._cancel = threading.Event()
        self._hasher = hashlib.sha256()
        self._hashed = 0  # bytes of the partial file already fed to _hasher
        self.part_path = home.downloads / f"{file.sha256}.part"
        self.sidecar_path = home.downloads / f"{file.sha256}.json"

    # ------------------------------------------------------------- control

    def pause(self) -> None:
        self._pause.set()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def partial_bytes(self) -> int:
        return self.part_path.stat().st_size if self.part_path.exists() else 0

    def discard(self) -> None:
        """Delete the partial file and sidecar (cancel when no transfer is running)."""
        self.part_path.unlink(missing_ok=True)
        self.sidecar_path.unlink(missing_ok=True)

    # ------------------------------------------------------------ transfer

    def run(self) -> ModelRecord:
        """Download (or resume), verify, move into ``models/`` and register."""
        self._pause.clear()
        f = self.file
        assert f.sha256 is not None and f.size is not None
        for record in self.library.list():
            if record.provenance.sha256 == f.sha256 and record.path.exists():
                raise HubError(f"{f.filename} is already installed as {record.name}")
        self.home.downloads.mkdir(parents=True, exist_ok=True)
        with exclusive(self.home.downloads / f"{f.sha256}.lock", f.filename):
            if not self.sidecar_path.exists() or read_sidecar(self.sidecar_path) is None:
                self.part_path.unlink(missing_ok=True)  # a stray partial without a record
                write_sidecar(self.sidecar_path, self.file)
            have = self.partial_bytes
            if have > f.size:
                self.discard()
                write_sidecar(self.sidecar_path, self.file)
                have = 0
            self._check_space(f.size - have)
            try:
                self._transfer(have)
            except DownloadCancelled:
                self.discard()
                raise
            except Exception:
                if self.partial_bytes == 0:
                    self.discard()  # nothing to resume: leave no pending entry behind
                raise
            if self._cancel.is_set():
                self.discard()
                raise DownloadCancelled(f"download of {f.filename} cancelled")
            return self._finish()

    def _check_space(self, needed: int) -> None:
        free = shutil.disk_usage(self.home.downloads).free
        if free < needed + DISK_MARGIN:
            raise DiskFull(f"Not enough disk space for {self.file.filename}: needs "
                           f"{format_bytes(needed + DISK_MARGIN)}, {format_bytes(free)} free in "
                           f"{self.home.downloads}")

    def _transfer(self, have: int) -> None:
        """Fetch until the file is complete, resuming after drops and short responses.

        A try that ends without bringing the partial file past the furthest point
        reached so far is fruitless: a dropped connection before any byte, a clean
        response shorter than announced, or a server that ignores ``Range`` and again
        sends only the start. Fruitless tries back off and, after ``_RETRIES`` in a
        row, stop with a message; a try that makes progress resets the count.
        """
        f = self.file
        assert f.size is not None
        url = hf_hub_url(f.repo, f.filename, revision=f.revision, endpoint=self.endpoint)
        fruitless = 0
        best = have
        started_from = have
        meter = _SpeedMeter()
        while have < f.size:
            dropped: Exception | None = None
            try:
                have = self._stream(url, have, started_from, meter)
            except httpx2.TransportError as exc:
                if self._cancel.is_set():
                    raise DownloadCancelled(f"download of {f.filename} cancelled") from exc
                dropped, have = exc, self.partial_bytes
            if self._cancel.is_set():
                raise DownloadCancelled(f"download of {f.filename} cancelled")
            if have >= f.size:
                break
            if have > best:
                best, fruitless = have, 1 if dropped else 0
                if dropped is None:
                    continue  # a short response that still moved on: ask for the rest
            else:
                fruitless += 1
            if fruitless > _RETRIES:
                if dropped is not None:
                    raise HubError(f"The connection to {self.endpoint} keeps dropping "
                                   f"({type(dropped).__name__}); {format_bytes(have)} of "
                                   f"{format_bytes(f.size)} are kept, try again to resume"
                                   ) from dropped
                raise HubError(f"The server at {self.endpoint} keeps ending the transfer "
                               f"early: {f.filename} stops at {format_bytes(have)} of the "
                               f"{format_bytes(f.size)} the hub announced. What arrived is kept; "
                               "try again later to resume, or cancel the download")
            log.info("transfer ended at %d of %d bytes (%s); retrying (%d)", have, f.size,
                     type(dropped).__name__ if dropped else "short response", fruitless)
            if self._cancel.wait(min(5.0, 0.2 * 2 ** fruitless)):
                raise DownloadCancelled(f"download of {f.filename} cancelled")

    def _sync_hasher(self, have: int) -> None:
        """Make the running hash cover exactly the first ``have`` bytes of the partial file.

        The hash is computed as bytes arrive, so a finished download needs no second
        pass over a multi-gigabyte file; only a resumed one re-reads what it kept.
        """
        if self._hashed == have:
            return
        self._hasher, self._hashed = hashlib.sha256(), 0
        if have:
            with self.part_path.open("rb") as fh:
                while self._hashed < have and (block := fh.read(min(8 << 20,
                                                                    have - self._hashed))):
                    self._hasher.update(block)
                    self._hashed += len(block)

    def _stream(self, url: str, have: int, started_from: int, meter: _SpeedMeter) -> int:
        f = self.file
        assert f.size is not None
        self._sync_hasher(have)
        headers = build_hf_headers(token=self.token)
        headers["Accept-Encoding"] = "identity"
        if have:
            headers["Range"] = f"bytes={have}-"
        with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                  timeout=httpx2.Timeout(30.0)) as response:
            if response.status_code == 416:
                # Nothing beyond ``have``: complete, or the file is shorter than announced
                # (a fruitless try for the caller to count).
                return have
            if response.status_code >= 400:
                response.read()  # the error text is in the body
                with hub_errors(f"downloading {f.filename}", self.endpoint, f.repo):
                    hf_raise_for_status(response)
            mode = "ab"
            if have and response.status_code != 206:
                log.info("the server ignored the Range request; starting over")
                have, mode = 0, "wb"
                self._sync_hasher(0)
            last_report = 0.0
            with self.part_path.open(mode) as out:
                for chunk in response.iter_bytes(self.chunk_size):
                    if self._cancel.is_set():
                        raise DownloadCancelled(f"download of {f.filename} cancelled")
                    if have + len(chunk) > f.size:
                        chunk = chunk[: f.size - have]  # never write past the expected end
                    try:
                        out.write(chunk)
                        out.flush()
                    except OSError as exc:
                        self._hashed = -1  # unknown now; re-read on resume
                        raise self._write_failed(exc, have) from exc
                    self._hasher.update(chunk)
                    self._hashed += len(chunk)
                    have += len(chunk)
                    meter.add(len(chunk))
                    now = time.monotonic()
                    if self.progress and (now - last_report >= self.progress_interval
                                          or have >= f.size):
                        last_report = now
                        self._report(have, started_from, meter)
                    if have >= f.size:
                        break
                    if self._pause.is_set():
                        break
                with contextlib.suppress(OSError):
                    os.fsync(out.fileno())
        if self._pause.is_set() and have < f.size:
            raise DownloadPaused(f"download of {f.filename} paused at {format_bytes(have)} of "
                                 f"{format_bytes(f.size)}")
        return have

    def _report(self, have: int, started_from: int, meter: _SpeedMeter) -> None:
        assert self.progress is not None and self.file.size is not None
        speed = meter.speed()
        eta = (self.file.size - have) / speed if speed > 0 else None
        self.progress(DownloadProgress(self.file.filename, have, self.file.size, speed, eta,
                                       started_from))

    def _write_failed(self, exc: OSError, have: int) -> HubError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(self.home.downloads).free
            return DiskFull(f"The disk is full: {self.file.filename} stopped at "
                            f"{format_bytes(have)} of {format_bytes(self.file.size or 0)} "
                            f"({format_bytes(free)} free in {self.home.downloads}). Free some "
                            "space and download again to resume, or cancel it")
        return HubError(f"Cannot write {self.part_path}: {exc.strerror or exc}")

    def _finish(self) -> ModelRecord:
        f = self.file
        if self.partial_bytes != f.size:
            got = self.partial_bytes
            self.discard()
            raise HashMismatch(f"{f.filename} arrived with {got:,} bytes instead of "
                               f"{f.size:,}; the partial file was deleted, try again")
        self._sync_hasher(f.size)
        digest = self._hasher.hexdigest()
        if digest != f.sha256:
            self.discard()
            expected = (f.sha256 or "none")[:12]
            raise HashMismatch(f"{f.filename} is corrupt: its SHA-256 is {digest[:12]}…, "
                               f"the hub says {expected}…. The file was deleted and "
                               "nothing was installed; try the download again")
        try:
            read_gguf(self.part_path)
        except GGUFError as exc:
            self.discard()
            raise HubError(f"{f.filename} matches the hub's hash but is not a usable "
                           f"GGUF model: {exc}") from exc
        target = self._target_path()
        try:
            os.replace(self.part_path, target)
            fsync_dir(target.parent)  # the rename itself on disk, before it is listed
            record = self.library.register(
                target, self.name or Path(f.filename).stem, source="download",
                provenance=Provenance(repo=f.repo, file=f.filename, sha256=f.sha256,
                                      revision=f.revision, endpoint=self.endpoint))
        except Exception:
            target.unlink(missing_ok=True)
            raise
        finally:
            self.sidecar_path.unlink(missing_ok=True)
        return record

    def _target_path(self) -> Path:
        """A name in ``models/`` that is ours alone: created with ``O_EXCL``, so two
        downloads of same-named files from different repositories never share one."""
        stem = safe_stem(Path(self.file.filename).stem)
        n = 1
        while True:
            target = self.home.models / (f"{stem}.gguf" if n == 1 else f"{stem}-{n}.gguf")
            try:
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                n += 1
                continue
            return target


class _SpeedMeter:
    """Bytes per second over a sliding window of a few seconds."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.samples: list[tuple[float, int]] = [(time.monotonic(), 0)]
        self.total = 0

    def add(self, n: int) -> None:
        self.total += n
        now = time.monotonic()
        self.samples.append((now, self.total))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.pop(0)

    def speed(self) -> float:
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
