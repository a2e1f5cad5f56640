"""The CLI contract that scripts rely on: output, JSON shapes and exit codes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.terminal import PrintableStream, printable
from tests.gguf_factory import write_tiny_gguf

ROOT = Path(__file__).resolve().parent.parent


def hearth(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HEARTH_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_models_commands(tmp_path: Path, starter_gguf: Path) -> None:
    home = tmp_path / "home"
    listed = hearth(home, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    models = json.loads(listed.stdout)
    assert [m["name"] for m in models] == ["SmolLM2-135M-Instruct"]
    assert models[0]["quantization"] == "Q4_1" and models[0]["source"] == "starter"

    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    imported = hearth(home, "models", "import", str(tiny), "--name", "tiny-one")
    assert imported.returncode == 0, imported.stderr
    assert "imported tiny-one" in imported.stdout
    info = json.loads(hearth(home, "models", "info", "tiny-one", "--json").stdout)
    assert info["architecture"] == "llama" and info["parameters"] == 32 * 16 + 2 * 16 * 16
    table = hearth(home, "models", "list").stdout
    assert "tiny-one" in table and "SmolLM2-135M-Instruct" in table
    removed = hearth(home, "models", "rm", "tiny-one")
    assert removed.returncode == 0 and "removed tiny-one" in removed.stdout
    assert not (home / "models" / "tiny-one.gguf").exists()


@pytest.mark.parametrize("args", [
    ("models", "info", "no-such-model"),
    ("models", "rm", "no-such-model"),
    ("models", "import", "/no/such/file.gguf"),
    ("chat", "-m", "no-such-model", "-p", "hi"),
    ("chat", "-p", "hi", "--temperature", "-3"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = hearth(tmp_path / "home", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hearth: "), result.stderr
    assert "Traceback" not in result.stderr


def test_import_of_a_non_model_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "notes.gguf"
    junk.write_text("just some notes")
    result = hearth(tmp_path / "home", "models", "import", str(junk))
    assert result.returncode == 2
    assert "not a GGUF model (bad magic bytes" in result.stderr
    assert list((tmp_path / "home" / "models").iterdir()) == []


@pytest.mark.slow
def test_chat_one_prompt_with_stats(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = hearth(home, "chat", "-p", "What is the capital of France?", "--seed", "1",
                    "--temperature", "0", "--max-tokens", "24", "--stats")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    stats = json.loads(result.stderr.strip().splitlines()[-1])
    assert {"prompt_tokens", "completion_tokens", "ttft_s", "prefill_tps",
            "decode_tps"} <= set(stats)
    assert 0 < stats["completion_tokens"] <= 24
    # The exchange is stored like any other conversation.
    from app.workspace import open_workspace

    ws = open_workspace(home)
    try:
        conversations = ws.store.list()
        assert len(conversations) == 1
        assert [m.role for m in ws.store.messages(conversations[0].id)] == ["user",
                                                                            "assistant"]
    finally:
        ws.close()


@pytest.mark.slow
def test_interactive_chat(tmp_path: Path) -> None:
    env = dict(os.environ, HEARTH_HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "chat", "--max-tokens", "16", "--temperature", "0"],
        input="Hello!\nWhat is 1+1?\n/exit\n", cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("> ") >= 3


ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202eevil\r"


def test_escape_sequences_from_a_model_file_never_reach_the_terminal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hostile = write_tiny_gguf(tmp_path / "h.gguf", name=f"clean{ESCAPES}name")
    assert hearth(home, "models", "import", str(hostile), "--name", "h").returncode == 0
    for args in (("models", "info", "h"), ("models", "list"), ("models", "info", "h", "--json")):
        shown = hearth(home, *args)
        assert shown.returncode == 0, shown.stderr
        out = shown.stdout + shown.stderr
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", out), repr(out)
    info = hearth(home, "models", "info", "h").stdout
    assert "clean[2J]0;owned31mevilname" in info  # the text stays, only the controls go
    # JSON keeps the exact text, escaped by json itself.
    assert "\\u001b[2J" in hearth(home, "models", "info", "h", "--json").stdout


def test_printable_keeps_text_and_the_progress_bars_carriage_return() -> None:
    assert printable(f"a\tb\nc{ESCAPES}") == "a\tb\nc[2J]0;owned31mevil"
    out = io.StringIO()
    stream = PrintableStream(out)
    stream.write("\r[###] 50%")
    stream.write(f"name{ESCAPES}")
    assert out.getvalue() == "\r[###] 50%name[2J]0;owned31mevil"
