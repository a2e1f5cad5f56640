"""Reading and checking GGUF files without loading them.

Model files come from strangers. Before a file is registered in the library (or handed
to llama.cpp, which aborts the whole process on some malformed inputs) we parse its
header, metadata and tensor table ourselves, with bounds checks on every length, and
confirm that every tensor's data lies inside the file. A truncated download, an empty
file or a renamed ``.bin`` is refused here with a one-line reason.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Arrays longer than this are summarised by their length (the vocabulary has ~50k
# entries; nothing in the library view needs them).
_ARRAY_KEEP = 64
_MAX_COUNT = 10_000_000

_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
                            7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is not a usable GGUF model; the message is one line for a person."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFInfo:
    """What the library shows about a model, read from its GGUF header."""

    path: Path
    version: int
    file_size: int
    metadata: dict[str, Any] = field(repr=False)
    tensors: list[TensorInfo] = field(repr=False)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or self.path.stem)

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if value is not None else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def quantization(self) -> str:
        """The file type the converter recorded, else the dominant tensor type by bytes."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int):
            try:
                return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
            except ValueError:
                pass
        by_bytes: Counter[int] = Counter()
        for t in self.tensors:
            by_bytes[t.ggml_type] += t.n_bytes
        if not by_bytes:
            return "unknown"
        dominant = by_bytes.most_common(1)[0][0]
        try:
            return GGMLQuantizationType(dominant).name
        except ValueError:
            return f"type{dominant}"

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "parameters": self.parameter_count,
            "quantization": self.quantization,
            "file_size": self.file_size,
            "context_length": self.context_length,
            "has_chat_template": self.chat_template is not None,
            "n_layers": self.arch_value("block_count"),
            "n_embd": self.arch_value("embedding_length"),
            "n_head": self.arch_value("attention.head_count"),
            "n_head_kv": self.arch_value("attention.head_count_kv"),
            # for the memory estimate (app.fit): head sizes when they differ from
            # n_embd / n_head (Gemma, Qwen3), and the vocabulary (logits buffer)
            "key_length": self.arch_value("attention.key_length"),
            "value_length": self.arch_value("attention.value_length"),
            "n_vocab": self.vocab_size,
        }

    @property
    def vocab_size(self) -> int | None:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, int):  # a skipped long array stands for its length
            return int(tokens)
        if isinstance(tokens, list):
            return len(tokens)
        value = self.arch_value("vocab_size")
        return int(value) if value is not None else None


class _Reader:
    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise GGUFError("the file ends in the middle of its header (truncated download?)")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def count(self, what: str) -> int:
        n = self.scalar("<Q")
        if n > _MAX_COUNT:
            raise GGUFError(f"the header claims {n} {what}, which cannot be right")
        return n

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > self.size:
            raise GGUFError("a metadata string is longer than the whole file")
        try:
            return self.read(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError("a metadata string is not valid UTF-8") from exc

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.scalar("<I")
            n = self.count("array items")
            if item_type in _SCALARS and n > _ARRAY_KEEP:
                width = struct.calcsize(_SCALARS[item_type])
                if n * width > self.size:
                    raise GGUFError("a metadata array is longer than the whole file")
                self.fh.seek(n * width, 1)
                return _ArrayLength(n)
            items = [self.value(item_type) for _ in range(n)]
            return items if n <= _ARRAY_KEEP else _ArrayLength(n)
        raise GGUFError(f"unknown metadata value type {vtype}")


class _ArrayLength(int):
    """Stands for a long metadata array that was skipped; its value is the length."""


def read_gguf(path: str | Path) -> GGUFInfo:
    """Parse and check ``path``; raise :class:`GGUFError` with a readable reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise GGUFError(f"{path} does not exist") from exc
    except IsADirectoryError as exc:
        raise GGUFError(f"{path} is a folder, not a GGUF file") from exc
    except OSError as exc:
        raise GGUFError(f"{path} cannot be read: {exc.strerror}") from exc
    with fh:
        if size == 0:
            raise GGUFError("the file is empty")
        reader = _Reader(fh, size)
        magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise GGUFError(f"this file is not a GGUF model (bad magic bytes {magic!r})")
        version = reader.scalar("<I")
        if version not in SUPPORTED_VERSIONS:
            raise GGUFError(f"GGUF version {version} is not supported (only 2 and 3)")
        n_tensors = reader.count("tensors")
        n_kv = reader.count("metadata entries")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = reader.string()
            metadata[key] = reader.value(reader.scalar("<I"))
        tensors = [_read_tensor_info(reader) for _ in range(n_tensors)]
        alignment = int(metadata.get("general.alignment", 32) or 32)
        data_start = -(-fh.tell() // alignment) * alignment
    if not tensors:
        raise GGUFError("the file holds no tensors, so it is not a model")
    end = max(data_start + t.offset + t.n_bytes for t in tensors)
    if end > size:
        missing = end - size
        raise GGUFError(f"the file is truncated: its tensors need {missing:,} more bytes "
                        "than it has (an interrupted download?)")
    return GGUFInfo(path=path, version=version, file_size=size, metadata=metadata,
                    tensors=tensors)


def _read_tensor_info(reader: _Reader) -> TensorInfo:
    name = reader.string()
    n_dims = reader.scalar("<I")
    if n_dims > 8:
        raise GGUFError(f"tensor {name!r} claims {n_dims} dimensions")
    shape = tuple(reader.scalar("<Q") for _ in range(n_dims))
    ggml_type = reader.scalar("<I")
    offset = reader.scalar("<Q")
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError) as exc:
        raise GGUFError(f"tensor {name!r} has an unknown data type {ggml_type}") from exc
    n_elements = 1
    for d in shape:
        n_elements *= d
    if n_elements > reader.size * 8:
        raise GGUFError(f"tensor {name!r} is larger than the whole file")
    return TensorInfo(name, shape, ggml_type, offset, n_elements // block * type_size)


def read_metadata_prefix(data: bytes) -> dict[str, Any]:
    """The metadata entries that lie wholly inside ``data``, the first bytes of a GGUF.

    Used to describe a file on the hub before downloading it (a Range request for the
    first few hundred KiB): the architecture's shape comes before the tokenizer, so a
    prefix is enough to size the KV cache. Stops quietly where the prefix ends; a long
    array whose header is inside the prefix is recorded by its length.
    """
    import io

    if data[:4] != GGUF_MAGIC:
        raise GGUFError(f"this file is not a GGUF model (bad magic bytes {data[:4]!r})")
    size = 1 << 62  # the real size is unknown; bounds are checked against the prefix
    reader = _Reader(io.BytesIO(data), size)
    metadata: dict[str, Any] = {}
    try:
        reader.fh.seek(4)
        if reader.scalar("<I") not in SUPPORTED_VERSIONS:
            return metadata
        reader.count("tensors")
        for _ in range(reader.count("metadata entries")):
            key = reader.string()
            vtype = reader.scalar("<I")
            if vtype == _ARRAY:
                item_type = reader.scalar("<I")
                n = reader.count("array items")
                metadata[key] = _ArrayLength(n)
                if item_type == _STRING:
                    for _ in range(n):
                        reader.string()
                elif item_type in _SCALARS:
                    reader.read(n * struct.calcsize(_SCALARS[item_type]))
                else:
                    break
            else:
                metadata[key] = reader.value(vtype)
    except GGUFError:
        pass  # the prefix ended inside this entry
    return metadata
