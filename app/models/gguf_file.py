"""Reading and checking GGUF model files without loading them.

Before a file is registered in the library (or handed to llama.cpp, which aborts the
whole process on some malformed inputs) its header, metadata and tensor table are parsed
here, through the bounded reader of :mod:`app.models.gguf_reader`, and every tensor's
data is confirmed to lie inside the file. A truncated download, an empty file or a
renamed ``.bin`` is refused with a one-line reason; what a sound file says (name,
architecture, shape, quantization) is a :class:`GGUFInfo`.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from app.models.gguf_reader import (
    ARRAY,
    GGUF_MAGIC,
    SUPPORTED_VERSIONS,
    ArrayLength,
    GGUFError,
    GGUFReader,
)
from app.models.model_info import ModelInfo

# The error of every GGUF room is named here too, where most callers already look for it.
__all__ = ["GGUFError", "GGUFInfo", "TensorInfo", "read_gguf", "read_metadata_prefix"]

_MAX_ALIGNMENT = 1 << 20


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

    def arch_count(self, key: str) -> int | None:
        """A shape value as a whole number; :class:`GGUFError` when it is anything else.

        Strangers' files hold strings, NaN and +inf here; letting one through stores it
        in the library, where every later memory estimate trips over it.
        """
        value = self.arch_value(key)
        if value is None:
            return None
        return _whole(f"{self.architecture}.{key}", value)

    @property
    def context_length(self) -> int | None:
        return self.arch_count("context_length")

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

    def summary(self) -> ModelInfo:
        """What the library keeps of the header (the memory estimate's shape among it)."""
        return ModelInfo.stored({
            "name": self.name,
            "architecture": self.architecture,
            "parameters": self.parameter_count,
            "quantization": self.quantization,
            "file_size": self.file_size,
            "context_length": self.context_length,
            "has_chat_template": self.chat_template is not None,
            "n_layers": self.arch_count("block_count"),
            "n_embd": self.arch_count("embedding_length"),
            "n_head": self.arch_count("attention.head_count"),
            "n_head_kv": self.arch_count("attention.head_count_kv"),
            "key_length": self.arch_count("attention.key_length"),
            "value_length": self.arch_count("attention.value_length"),
            "n_vocab": self.vocab_size,
        })

    @property
    def vocab_size(self) -> int | None:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, int):  # a skipped long array stands for its length
            return int(tokens)
        if isinstance(tokens, list):
            return len(tokens)
        return self.arch_count("vocab_size")


def _shown(magic: bytes) -> str:
    """The first bytes as a person reads them: “This” for text, hex otherwise (a Python
    bytes literal such as b'This' meant nothing to the person who saw it)."""
    if not magic:
        return "the file is empty"
    text = magic.decode("ascii", "replace")
    if text.isprintable() and "\ufffd" not in text:
        return f"it starts with “{text}”, where a GGUF model starts with “GGUF”"
    return f"it starts with 0x{magic.hex()}, where a GGUF model starts with “GGUF”"


def _whole(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GGUFError(f"metadata {key} is {str(value)[:40]!r}, not a whole number")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise GGUFError(f"metadata {key} is {value}, not a whole number")
        value = int(value)
    if value < 0:
        raise GGUFError(f"metadata {key} is {value}, not a whole number of at least 0")
    return int(value)


def read_gguf(path: str | Path) -> GGUFInfo:
    """Parse and check ``path``; raise :class:`GGUFError` with a readable reason.

    Every way a stranger's bytes can be wrong ends here as :class:`GGUFError` (callers
    catch only that: the CLI exits 2, the worker reports ``load_failed``), never as a
    RecursionError, OverflowError or other traceback.
    """
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
    try:
        with fh:
            info = _parse(fh, path, size)
        info.summary()  # the values the library stores must be sound, or we refuse now
    except GGUFError:
        raise
    except OSError as exc:
        raise GGUFError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError,
            struct.error) as exc:
        raise GGUFError(f"the file's header is malformed ({type(exc).__name__})") from exc
    return info


def _parse(fh: BinaryIO, path: Path, size: int) -> GGUFInfo:
    if size == 0:
        raise GGUFError("the file is empty")
    reader = GGUFReader(fh, size)
    magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFError(f"this file is not a GGUF model (bad magic bytes: {_shown(magic)})")
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
    alignment = _alignment(metadata.get("general.alignment", 32))
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


def _alignment(value: Any) -> int:
    """``general.alignment``: a power of two, as llama.cpp requires."""
    if (isinstance(value, bool) or not isinstance(value, int)
            or not 0 < value <= _MAX_ALIGNMENT or value & (value - 1)):
        raise GGUFError(f"general.alignment is {str(value)[:40]!r}; it must be a power of "
                        "two")
    return value


def _read_tensor_info(reader: GGUFReader) -> TensorInfo:
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
        raise GGUFError(f"this file is not a GGUF model (bad magic bytes: "
                        f"{_shown(data[:4])})")
    size = 1 << 62  # the real size is unknown; bounds are checked against the prefix
    reader = GGUFReader(io.BytesIO(data), size)
    metadata: dict[str, Any] = {}
    try:
        reader.fh.seek(4)
        if reader.scalar("<I") not in SUPPORTED_VERSIONS:
            return metadata
        reader.count("tensors")
        for _ in range(reader.count("metadata entries")):
            key = reader.string()
            vtype = reader.scalar("<I")
            if vtype == ARRAY:
                item_type = reader.scalar("<I")
                n = reader.count("array items")
                metadata[key] = ArrayLength(n)
                reader.skip_items(item_type, n, 1)
            else:
                metadata[key] = reader.value(vtype)
    except GGUFError:
        pass  # the prefix ended inside this entry
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError,
            struct.error):
        pass  # a malformed entry: keep what came before it
    return metadata
