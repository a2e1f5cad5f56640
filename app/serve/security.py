"""Who may talk to the local server: the API key, the Host header and the CORS origin.

The server listens on 127.0.0.1 only, but that alone does not keep other people's code
out: any web page the person opens can make their browser send requests to localhost,
and a DNS-rebinding page can even read the answers (its own name then points at
127.0.0.1, so the browser sees a same-origin request). Three checks close that:

- every request but a CORS preflight needs the API key (``Authorization: Bearer KEY``);
- a request whose ``Host`` is not a loopback name is refused before anything else, which
  is what defeats DNS rebinding (the browser sends the attacker's name there);
- CORS headers are sent only to pages served from this machine (``localhost``,
  ``127.0.0.1``, ``[::1]``), so a foreign page's browser refuses to hand it the answer.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from app.atomic import fsync_dir

KEY_ENV = "HEARTH_API_KEY"
KEY_FILE = "server-api-key"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def key_path(root: Path) -> Path:
    """Where the generated key is kept: in the data folder, readable by its owner only."""
    return Path(root) / KEY_FILE


def api_key(root: Path) -> str:
    """The key clients must send: ``$HEARTH_API_KEY``, else the one kept in the home
    (made on first use)."""
    from_env = os.environ.get(KEY_ENV, "").strip()
    if from_env:
        return from_env
    path = key_path(root)
    try:
        kept = path.read_text("utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        if path.stat().st_mode & 0o077:  # someone loosened it: tighten it again
            path.chmod(0o600)
        return kept
    return new_key(root)


def new_key(root: Path) -> str:
    """Make, keep and return a fresh key (the old one stops working)."""
    key = "hearth-" + secrets.token_urlsafe(32)
    path = key_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start: never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (key + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return key


def key_matches(header: str | None, key: str) -> bool:
    """Whether an ``Authorization`` header carries ``key`` (compared in constant time)."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), key.encode("utf-8"))


def _host_name(netloc: str) -> str:
    """The name in ``host[:port]`` (brackets of an IPv6 address removed), lower case."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    return netloc.rpartition(":")[0] if netloc.count(":") == 1 else netloc


def host_allowed(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine's loopback (a missing one does not)."""
    return bool(host) and _host_name(host or "") in LOOPBACK_NAMES


def origin_allowed(origin: str | None) -> bool:
    """Whether a browser ``Origin`` is a page served from this machine."""
    if not origin:
        return False
    try:
        parts = urlsplit(origin.strip())
        name = (parts.hostname or "").lower()
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and name in LOOPBACK_NAMES
