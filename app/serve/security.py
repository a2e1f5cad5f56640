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
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from app.atomic import atomic_write_text
from app.errors import BadInput
from app.serve import limits
from app.side_files import Damaged, keep_aside, read_text

KEY_ENV = "HEARTH_API_KEY"
KEY_FILE = "server-api-key"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class WeakKey(BadInput, ValueError):
    """``$HEARTH_API_KEY`` is too short to keep anyone out."""


def key_path(root: Path) -> Path:
    """Where the generated key is kept: in the data folder, readable by its owner only."""
    return Path(root) / KEY_FILE


def api_key(root: Path, notices: list[str] | None = None) -> str:
    """The key clients must send: ``$HEARTH_API_KEY``, else the one kept in the home
    (made on first use). A key from the environment shorter than
    :data:`limits.MIN_KEY_LENGTH` raises :class:`WeakKey` (``HEARTH_API_KEY=1`` was
    accepted, review S11).

    A kept key that is not one Hearth wrote (not UTF-8, not printable, a link, a folder)
    is kept aside and a new one made, said in ``notices`` (S6: it stopped the window
    from opening); the file is read without following a link (S12)."""
    from_env = os.environ.get(KEY_ENV, "").strip()
    if from_env:
        if len(from_env) < limits.MIN_KEY_LENGTH:
            raise WeakKey(f"${KEY_ENV} is {len(from_env)} characters long; a key must have "
                          f"at least {limits.MIN_KEY_LENGTH}. Unset it to use the key "
                          "Hearth made, or set a random one: python -c \"import secrets; "
                          "print(secrets.token_urlsafe(32))\"")
        return from_env
    path = key_path(root)
    try:
        kept = (read_text(path) or "").strip()
        if kept and not (kept.isascii() and kept.isprintable() and " " not in kept):
            raise Damaged("it is not a key a client could send")
    except Damaged as exc:
        keep_aside(path, str(exc), "Hearth made a new API key (clients need the new one, "
                   "shown in the server's panel)", notices)
        kept = ""
    if kept:
        _owner_only(path)
        return kept
    return new_key(root)


def _owner_only(path: Path) -> None:
    """Tighten the key file to 0600 if someone loosened it, on the file itself (the
    descriptor of a link-refusing open), never a link's target."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def new_key(root: Path) -> str:
    """Make, keep and return a fresh key (the old one stops working)."""
    key = "hearth-" + secrets.token_urlsafe(32)
    path = key_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start (never readable by others, not even for a moment), in
    # a fresh temporary file (a link planted there is not followed), then renamed.
    atomic_write_text(path, key + "\n", private=True)
    return key


def key_matches(header: str | None, key: str) -> bool:
    """Whether an ``Authorization`` header carries ``key`` (compared in constant time)."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), key.encode("utf-8"))


_LOOPBACK_HOST = re.compile(r"(?:localhost|127\.0\.0\.1|\[::1\])(?::[0-9]{1,5})?|::1",
                            re.IGNORECASE)


def host_allowed(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine's loopback (a missing one does not).

    The whole header must be the name and at most a port, nothing after it: a check
    that kept whatever came before a ``:`` let ``localhost:1@evil.com`` through
    (review S11). Any port is fine: a forwarded port arrives under its own number."""
    return host is not None and _LOOPBACK_HOST.fullmatch(host) is not None


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
