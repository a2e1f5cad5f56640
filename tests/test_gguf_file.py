"""The GGUF checks that stand between a stranger's file and llama.cpp."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from app.models.gguf_file import GGUFError, read_gguf
from tests.gguf_factory import write_tiny_gguf


def test_reads_the_starter_model(starter_gguf: Path) -> None:
    info = read_gguf(starter_gguf)
    summary = info.summary()
    assert summary.architecture == "llama"
    assert summary.quantization == "Q4_1"
    assert summary.context_length == 8192
    assert summary.n_layers == 30
    assert summary.has_chat_template is True
    assert summary.parameters is not None and 130e6 < summary.parameters < 140e6


def test_reads_a_generated_file(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf", name="Tiny", chat_template="{{ x }}")
    info = read_gguf(path)
    assert info.name == "Tiny"
    assert info.quantization == "ALL_F32"
    assert info.chat_template == "{{ x }}"
    assert info.parameter_count == 32 * 16 + 2 * 16 * 16


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"hello, I am a text file pretending to be a model\n", "bad magic"),
        (bytes(range(256)) * 64, "bad magic"),
        (b"GGUF" + struct.pack("<I", 1) + b"\0" * 32, "version 1"),
        (b"GGUF" + struct.pack("<I", 3), "truncated"),
        (b"GGUF" + struct.pack("<IQQ", 3, 2**40, 0), "cannot be right"),
    ],
)
def test_refuses_bad_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError, match=reason):
        read_gguf(path)


def test_refuses_a_truncated_download(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf(path)


def test_refuses_missing_and_folders(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="does not exist"):
        read_gguf(tmp_path / "nope.gguf")
    with pytest.raises(GGUFError, match="folder"):
        read_gguf(tmp_path)


# ----------------------------------------------------- malformed headers (issue 11)


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", vtype) + payload


def _gguf(*kvs: bytes, alignment: int = 32) -> bytes:
    """A minimal GGUF v3 file: the given metadata and one 4-float tensor."""
    kvs = (_kv("general.architecture", 8, _s("llama")), *kvs)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs)
    head += _s("t") + struct.pack("<IQIQ", 1, 4, 0, 0)
    pad = -len(head) % alignment if alignment > 0 else 0
    return head + b"\0" * pad + b"\0" * 16


def _nested(depth: int) -> bytes:
    """An array of an array of ... ``depth`` levels deep."""
    # each level: item type "array", one item; the innermost is an empty uint32 array
    return struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQ", 4, 0)


@pytest.mark.parametrize(("content", "reason"), [
    (_gguf(_kv("x.deep", 9, _nested(100_000))), "nested"),
    (_gguf(_kv("general.alignment", 8, _s("wide"))), "alignment"),
    (_gguf(_kv("general.alignment", 4, struct.pack("<I", 0))), "alignment"),
    (_gguf(_kv("general.alignment", 4, struct.pack("<I", 24)), alignment=24), "alignment"),
    (_gguf(_kv("general.alignment", 6, struct.pack("<f", float("inf")))), "alignment"),
    (_gguf(_kv("llama.context_length", 8, _s("long"))), "llama.context_length"),
    (_gguf(_kv("llama.context_length", 6, struct.pack("<f", float("nan")))),
     "llama.context_length"),
    (_gguf(_kv("llama.block_count", 5, struct.pack("<i", -3))), "llama.block_count"),
    (_gguf(_kv("general.name", 8, struct.pack("<Q", 1 << 40))), "longer than"),
])
def test_every_malformed_header_is_a_gguf_error(tmp_path: Path, content: bytes,
                                                reason: str) -> None:
    """Issue 11 F10: deep nesting, bad alignment and non-numeric values used to escape as
    RecursionError, ValueError or OverflowError tracebacks."""
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError, match=reason):
        read_gguf(path)


def test_an_infinite_shape_value_is_refused(tmp_path: Path) -> None:
    """Issue 11 F9: ``+inf`` as a shape value used to be stored and break the Models tab
    and ``models fit`` at every start."""
    path = tmp_path / "inf.gguf"
    path.write_bytes(_gguf(_kv("llama.embedding_length", 6, struct.pack("<f", float("inf")))))
    with pytest.raises(GGUFError, match="llama.embedding_length .* whole number"):
        read_gguf(path)


def test_the_minimal_file_itself_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.gguf"
    path.write_bytes(_gguf(_kv("llama.context_length", 4, struct.pack("<I", 512)),
                           _kv("x.shallow", 9, _nested(2))))
    info = read_gguf(path)
    assert info.context_length == 512 and info.summary().n_layers is None


def test_the_vocabulary_is_skipped_not_materialised(tmp_path: Path) -> None:
    """Issue 11 F11: a 300k-entry vocabulary used to be decoded string by string (about
    5.5x its size in memory, partly on the GUI thread); only its length is needed."""
    import tracemalloc

    n = 300_000
    tokens = struct.pack("<IQ", 8, n) + b"".join(_s(f"token-{i:08d}") for i in range(n))
    path = tmp_path / "vocab.gguf"
    path.write_bytes(_gguf(_kv("tokenizer.ggml.tokens", 9, tokens)))
    metadata_bytes = len(tokens)
    tracemalloc.start()
    try:
        info = read_gguf(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.vocab_size == n and info.summary().n_vocab == n
    assert peak < metadata_bytes / 10, f"peak {peak:,} bytes for {metadata_bytes:,}"


def test_a_bad_string_inside_a_skipped_array_is_still_caught(tmp_path: Path) -> None:
    tokens = struct.pack("<IQ", 8, 100) + _s("a") * 99 + struct.pack("<Q", 1 << 40)
    path = tmp_path / "bad-vocab.gguf"
    path.write_bytes(_gguf(_kv("tokenizer.ggml.tokens", 9, tokens)))
    with pytest.raises(GGUFError):
        read_gguf(path)


def test_the_cli_refuses_a_malformed_file_with_one_line(tmp_path: Path) -> None:
    """Issue 11 F10: ``hearth models import`` of such a file exited 1 with a traceback."""
    import os
    import subprocess
    import sys

    path = tmp_path / "deep.gguf"
    path.write_bytes(_gguf(_kv("x.deep", 9, _nested(50_000))))
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "app.cli.main", "models", "import", str(path)],
                            cwd=root, env=dict(os.environ, HEARTH_HOME=str(tmp_path / "h")),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot import deep.gguf: metadata arrays are nested" in result.stderr


def test_the_model_worker_reports_load_failed_for_a_malformed_file(tmp_path: Path) -> None:
    """Issue 11 F10: the worker died on such a file instead of reporting load_failed."""
    from app.inference import protocol as p
    from app.inference.client import InferenceClient, WorkerError

    path = tmp_path / "bad-alignment.gguf"
    path.write_bytes(_gguf(_kv("general.alignment", 8, _s("wide"))))
    client = InferenceClient(log_file=tmp_path / "worker.log")
    try:
        client.start()
        with pytest.raises(WorkerError) as failed:
            client.load_blocking(path, timeout=120)
        event = failed.value.event
        assert isinstance(event, p.Error) and event.error_kind == "load_failed", event
        assert "alignment" in event.message
        assert client.alive  # still there for the next model
    finally:
        client.close()
