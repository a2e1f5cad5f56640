"""Looking up a few entries of a GGUF file's vocabulary without decoding all of it.

:func:`app.models.gguf_file.read_gguf` walks past the vocabulary (hundreds of thousands
of strings); the hand-off needs only a few texts by id (the end-of-turn token) or a few
ids by text (a family's turn markers), read with the same bounds checks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from app.models.gguf_reader import (
    ARRAY,
    GGUF_MAGIC,
    STRING,
    SUPPORTED_VERSIONS,
    GGUFError,
    GGUFReader,
)


def token_texts(path: str | Path, ids: Iterable[int]) -> dict[int, str]:
    """The text of a few vocabulary entries (an end-of-turn token, say), by id.

    :func:`read_gguf` walks past the vocabulary without decoding it; this reads only
    the entries asked for, with the same bounds checks. Ids outside it are left out.
    """
    wanted = sorted({i for i in ids if i >= 0})

    def visit(reader: GGUFReader, n: int) -> dict[int, str]:
        found, at = {}, 0
        for i in (i for i in wanted if i < n):
            reader.skip_strings(i - at)
            found[i] = reader.string()
            at = i + 1
        return found

    return _scan_vocabulary(Path(path), visit) or {}


def token_ids(path: str | Path, texts: Iterable[str]) -> dict[str, int]:
    """The ids of a few texts in the vocabulary (a family's turn markers, say)."""
    wanted = set(texts)

    def visit(reader: GGUFReader, n: int) -> dict[str, int]:
        found = {}
        for i in range(n):
            text = reader.string()
            if text in wanted:
                found[text] = i
                if len(found) == len(wanted):
                    break
        return found

    return _scan_vocabulary(Path(path), visit) or {}


def _scan_vocabulary(path: Path, visit: Callable[[GGUFReader, int], Any]) -> Any:
    """Walk to ``tokenizer.ggml.tokens`` and hand its reader and length to ``visit``."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            reader = GGUFReader(fh, size)
            if fh.read(4) != GGUF_MAGIC or reader.scalar("<I") not in SUPPORTED_VERSIONS:
                raise GGUFError(f"{path.name} is not a GGUF model this reader knows")
            reader.count("tensors")
            for _ in range(reader.count("metadata entries")):
                key = reader.string()
                vtype = reader.scalar("<I")
                if key != "tokenizer.ggml.tokens" or vtype != ARRAY:
                    reader.value(vtype)
                    continue
                if reader.scalar("<I") != STRING:
                    raise GGUFError("tokenizer.ggml.tokens is not a list of strings")
                return visit(reader, reader.count("array items"))
    except OSError as exc:
        raise GGUFError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except (RecursionError, MemoryError, OverflowError, ValueError, struct.error) as exc:
        raise GGUFError(f"the file's header is malformed ({type(exc).__name__})") from exc
    return None
