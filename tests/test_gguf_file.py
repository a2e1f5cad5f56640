"""The GGUF checks that stand between a stranger's file and llama.cpp."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from app.gguf_file import GGUFError, read_gguf
from tests.gguf_factory import write_tiny_gguf


def test_reads_the_starter_model(starter_gguf: Path) -> None:
    info = read_gguf(starter_gguf)
    summary = info.summary()
    assert summary["architecture"] == "llama"
    assert summary["quantization"] == "Q4_1"
    assert summary["context_length"] == 8192
    assert summary["n_layers"] == 30
    assert summary["has_chat_template"] is True
    assert 130e6 < summary["parameters"] < 140e6


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
