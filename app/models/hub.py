"""The Hugging Face hub: search GGUF models, list a repository's files, describe one.

Downloading a file into the library is :mod:`app.models.download`; this module is what
both it and the model browser ask the hub, and how hub failures are said to a person
(:class:`HubError`, one or two lines, never an HTTP traceback).

``HF_ENDPOINT`` is read when a :class:`HubClient` is built (not at import, so tests and
mirrors can point it elsewhere), and the token is ``HF_TOKEN`` or the stored
``hf auth login`` token via huggingface_hub's own lookup. Tokens are never logged.

Offline, huggingface_hub retries a failed connection five times with back-off (about
23 s of "Searching…"); so each search or listing first checks in at most
:data:`REACH_TIMEOUT_S` that the hub's host answers at all, and ``HF_HUB_OFFLINE=1``
(read at each call) stops before any request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from app.errors import ExitCode, HearthError
from app.models.gguf_file import GGUFError, read_metadata_prefix
from app.models.model_info import ModelInfo

log = logging.getLogger("hearth.hub")

_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Za-z0-9]{1,3})+|BF16|F16|F32|TQ\d_\d|MXFP4)"
    r"(?![A-Za-z0-9])", re.IGNORECASE)
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


class HubError(HearthError):
    """A hub operation failed; the message is one or two lines for a person."""

    exit_code = ExitCode.BAD_INPUT


def quant_from_filename(filename: str) -> str | None:
    """The quantization type a GGUF file name announces (``Q4_K_M``, ``IQ3_XS``, ``F16``)."""
    stem = Path(filename).name
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


REACH_TIMEOUT_S = 3.0
"""How long a search waits to learn that the hub cannot be reached at all."""


def hub_offline_setting() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it, but now (it reads it at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def check_reachable(endpoint: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise :class:`HubError` saying Hearth is offline unless ``endpoint``'s host accepts
    a connection within ``timeout`` seconds (name lookup included, on a daemon thread
    because a lookup cannot be given a timeout)."""
    if hub_offline_setting():
        raise HubError("the hub is switched off here (HF_HUB_OFFLINE is set): models "
                       "already downloaded still work; unset it to search or download")
    parsed = urlparse(endpoint)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    failure: list[str] = [f"no answer within {timeout:.0f} s"]

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            failure.clear()
        except socket.gaierror:
            failure[:] = [f"the name {host} cannot be looked up"]
        except OSError as exc:
            failure[:] = [exc.strerror or type(exc).__name__]

    thread = threading.Thread(target=connect, name="hub-reach", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive() or failure:
        raise HubError(f"offline: cannot reach the Hugging Face hub at {endpoint} "
                       f"({failure[0] if failure else 'no answer'}); check the connection "
                       "and try again. Models already downloaded still work")


def hub_endpoint() -> str:
    """``$HF_ENDPOINT`` now (huggingface_hub reads it only once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@dataclass
class SearchResult:
    repo: str
    downloads: int = 0
    likes: int = 0
    updated: str | None = None
    gated: bool = False
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HubFile:
    """One GGUF file of a repository, as the hub describes it."""

    repo: str
    filename: str
    size: int | None
    sha256: str | None
    revision: str
    quant: str | None
    split_part: int | None = None
    split_total: int | None = None

    @property
    def is_split(self) -> bool:
        return self.split_total is not None and self.split_total > 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class HubClient:
    """Search and describe hub repositories. Build one per use; it holds no connection."""

    def __init__(self, endpoint: str | None = None, token: str | bool | None = None) -> None:
        self.endpoint = (endpoint or hub_endpoint()).rstrip("/")
        # None lets huggingface_hub find HF_TOKEN or the stored login itself.
        self.token = token
        self.api = HfApi(endpoint=self.endpoint, token=token)

    def search(self, query: str, limit: int = 30) -> list[SearchResult]:
        """GGUF model repositories matching ``query``, most downloaded first."""
        check_reachable(self.endpoint)
        with hub_errors(f"searching for {query!r}", self.endpoint):
            models = self.api.list_models(search=query or None, filter="gguf",
                                          sort="downloads", limit=limit)
            results = []
            for m in models:
                updated = getattr(m, "last_modified", None) or getattr(m, "created_at", None)
                results.append(SearchResult(
                    repo=m.id, downloads=int(m.downloads or 0), likes=int(m.likes or 0),
                    updated=updated.isoformat() if updated else None,
                    gated=bool(m.gated), tags=list(m.tags or [])))
            return results

    def list_files(self, repo: str, revision: str | None = None) -> list[HubFile]:
        """The repository's GGUF files with size, LFS SHA-256 and quantization type.

        The revision is pinned to the commit the hub reports, so that a download that
        resumes tomorrow fetches the same bytes even if the repository moved on.
        """
        check_reachable(self.endpoint)
        with hub_errors(f"reading {repo}", self.endpoint, repo):
            info = self.api.model_info(repo, revision=revision, files_metadata=True)
        commit = info.sha or revision or "main"
        files = []
        for sibling in info.siblings or []:
            name = sibling.rfilename
            if not name.lower().endswith(".gguf"):
                continue
            lfs = sibling.lfs
            split = _SPLIT.search(name)
            files.append(HubFile(
                repo=repo, filename=name,
                size=(lfs.size if lfs else None) or sibling.size,
                sha256=lfs.sha256.lower() if lfs else None, revision=commit,
                quant=quant_from_filename(_SPLIT.sub(".gguf", name)),
                split_part=int(split.group(1)) if split else None,
                split_total=int(split.group(2)) if split else None))
        return sorted(files, key=lambda f: (f.size or 0, f.filename))

    def describe_file(self, file: HubFile, prefix_bytes: int = 512 << 10) -> ModelInfo:
        """The model's shape from the first bytes of a hub file (one Range request).

        Returns what the prefix holds of a library record's :class:`ModelInfo`
        (architecture, context length, layers, heads, vocabulary) plus ``file_size``, so
        :func:`app.models.memory_fit.estimate_memory` can include the KV cache before downloading.
        """
        url = hf_hub_url(file.repo, file.filename, revision=file.revision,
                         endpoint=self.endpoint)
        headers = build_hf_headers(token=self.token)
        headers["Range"] = f"bytes=0-{prefix_bytes - 1}"
        data = bytearray()
        with (hub_errors(f"reading the header of {file.filename}", self.endpoint, file.repo),
              get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                   timeout=httpx2.Timeout(30.0)) as response):
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= prefix_bytes:
                    break  # a server that ignored Range: stop at the prefix
        try:
            meta = read_metadata_prefix(bytes(data[:prefix_bytes]))
        except GGUFError as exc:
            raise HubError(f"{file.filename} does not look like a GGUF model: {exc}") from exc
        arch = str(meta.get("general.architecture", "unknown"))

        def arch_int(key: str) -> int | None:
            value = meta.get(f"{arch}.{key}")
            return int(value) if isinstance(value, int) else None

        tokens = meta.get("tokenizer.ggml.tokens")
        return ModelInfo.stored({"architecture": arch, "file_size": file.size or 0,
                "context_length": arch_int("context_length"),
                "n_layers": arch_int("block_count"), "n_embd": arch_int("embedding_length"),
                "n_head": arch_int("attention.head_count"),
                "n_head_kv": arch_int("attention.head_count_kv"),
                "key_length": arch_int("attention.key_length"),
                "value_length": arch_int("attention.value_length"),
                "n_vocab": int(tokens) if isinstance(tokens, int) else arch_int("vocab_size")})

    def pick_file(self, repo: str, quant: str | None = None, filename: str | None = None,
                  revision: str | None = None) -> HubFile:
        """The file ``hearth models pull`` means: by name, by quant, or the only/Q4_K_M one."""
        files = self.list_files(repo, revision)
        if not files:
            raise HubError(f"{repo} has no GGUF files; Hearth runs GGUF models only "
                           "(look for a repository whose name ends in -GGUF)")
        if filename:
            for f in files:
                if f.filename == filename or Path(f.filename).name == filename:
                    return f
            raise HubError(f"{repo} has no file {filename!r}; it has: "
                           + ", ".join(f.filename for f in files))
        quants = sorted({f.quant for f in files if f.quant})
        wanted = (quant or "").upper()
        if wanted:
            matches = [f for f in files if f.quant == wanted]
            if not matches:
                raise HubError(f"{repo} has no {wanted} file; available: "
                               + (", ".join(quants) or "none named"))
        elif len(files) == 1:
            matches = files
        else:
            matches = [f for f in files if f.quant == "Q4_K_M"]
            if not matches:
                raise HubError(f"{repo} has {len(files)} GGUF files; choose one with "
                               f"--quant ({', '.join(quants)}) or --file NAME")
        single = [f for f in matches if not f.is_split]
        return (single or matches)[0]


@contextlib.contextmanager
def hub_errors(doing: str, endpoint: str, repo: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub / network exceptions into one-line :class:`HubError` s."""
    try:
        yield
    except GatedRepoError as exc:
        raise HubError(f"{repo} is gated: accept its licence on its hub page, then log in "
                       "(hf auth login) or set HF_TOKEN") from exc
    except RepositoryNotFoundError as exc:
        raise HubError(f"no model repository {repo!r} on {endpoint} (if it is private, "
                       "log in with hf auth login or set HF_TOKEN)") from exc
    except RevisionNotFoundError as exc:
        raise HubError(f"{repo} has no such revision") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            raise HubError(f"the hub refused access while {doing} (HTTP {status}); log in "
                           "with hf auth login or set HF_TOKEN") from exc
        raise HubError(f"the hub answered HTTP {status} while {doing}") from exc
    except httpx2.HTTPError as exc:
        raise HubError(f"cannot reach the Hugging Face hub at {endpoint} while {doing} "
                       f"({type(exc).__name__}); check the connection") from exc
