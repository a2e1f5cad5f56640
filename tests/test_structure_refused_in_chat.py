"""The chat's remembered Structured output (review 2026-12-07, S1): a grammar that used to
abort the worker at every message is shown refused in the box and fails each reply with
a clear error; the worker, the conversation and the kernel choice are untouched. Driven
like a person would, with the real worker and starter model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.inference.kernels import OVERRIDE_ENV, KernelMemory
from app.serve.security import KEY_ENV
from app.workspace import Workspace
from backends.inference.llama_compat import CRASH_TEST_ENV
from tests.starter_window import WAIT_MS, open_starter_window
from ui.main_window import MainWindow

pytestmark = pytest.mark.slow
NUL = 'root ::= "\\x00"'


@pytest.fixture
def window(qtbot: QtBot, workspace: Workspace, starter_gguf: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    for name in (KEY_ENV, OVERRIDE_ENV, CRASH_TEST_ENV):
        monkeypatch.delenv(name, raising=False)
    with open_starter_window(qtbot, workspace, grammar=NUL) as win:  # remembered before the fix
        yield win


def _send(qtbot: QtBot, win: MainWindow, text: str) -> object:
    with qtbot.waitSignal(win.chat.reply_finished, timeout=WAIT_MS) as finished:
        editor = win.chat_page.composer.editor
        editor.setPlainText(text)
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    return finished.args[0]


def test_a_remembered_grammar_that_crashed_the_worker_gives_a_clear_error(
        qtbot: QtBot, window: MainWindow, workspace: Workspace) -> None:
    box = window.chat_page.settings_panel.structure
    assert box.mode.currentData() == "grammar"
    assert box.hint.text().startswith("Refused") and "U+0000" in box.hint.text()
    pid = window.bridge.client.proc.pid
    for text in ("Hi", "Hi again"):
        reply = _send(qtbot, window, text)
        assert reply.error and "structured output is refused" in reply.error
        problem = window.chat.problem
        assert problem is not None and "U+0000 can never be generated" in problem.text
    assert window.bridge.client.alive and window.bridge.client.proc.pid == pid
    assert window.bridge.client.loaded is not None and window.bridge.client.loaded.extra_bufts
    assert KernelMemory(workspace.home.kernels_file).safe_record() is None
    # A schema that would expand without bound is not applied; a good one is, and works.
    box.mode.setCurrentIndex(box.mode.findData("json_schema"))
    box.editor.setPlainText(json.dumps({"type": "string", "maxLength": 30000}))
    box.flush()
    assert "Not applied" in box.hint.text() and "maxLength 30000" in box.hint.text()
    assert window.chat.sampling.grammar == NUL  # the last setting stays until replaced
    box.editor.setPlainText('{"type": "string", "maxLength": 5}')
    box.flush()
    assert window.chat.sampling.json_schema and not window.chat.sampling.grammar
    reply = _send(qtbot, window, "Say a word.")
    assert not reply.error and isinstance(json.loads(reply.text), str)
    assert window.bridge.client.proc.pid == pid
