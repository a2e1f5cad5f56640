"""The main window with the real starter model loaded in its chat: the fixtures for tests
that drive the whole app like a person would (registered in conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.inference import protocol as p
from app.serve.security import KEY_ENV
from app.settings import LoadSettings
from app.workspace import Workspace

WAIT_MS = 180_000  # a load or a reply of the real model on a busy 2-core machine


@contextlib.contextmanager
def open_starter_window(qtbot: QtBot, workspace: Workspace, **sampling: object
                        ) -> Iterator[object]:
    """A shown main window whose chat is READY with the starter, greedy 8-token replies
    (``sampling`` overrides); closed at the end, its worker stopped."""
    from ui.chat.chat_view_model import ModelState
    from ui.main_window import MainWindow

    record = workspace.library.ensure_starter()
    assert record is not None
    workspace.settings.load = LoadSettings(n_ctx=1024, n_threads=2)
    workspace.settings.remember_sampling(record.name, p.SamplingParams(
        **{"temperature": 0.0, "seed": 1, "max_tokens": 8, **sampling}))
    win = MainWindow(workspace)
    qtbot.addWidget(win)
    win.show()
    win.start()
    qtbot.waitUntil(lambda: win.chat.state == ModelState.READY, timeout=WAIT_MS)
    yield win
    win.close()
    assert not win.bridge.client.alive


@pytest.fixture
def starter_window(qtbot: QtBot, workspace: Workspace, starter_gguf: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A shown :class:`ui.main_window.MainWindow` whose chat is READY with the starter;
    greedy 8-token replies. Closing it must stop its worker and its server."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    with open_starter_window(qtbot, workspace) as win:
        yield win
    assert win.server_button.panel.server is None


@pytest.fixture
def make_window(qtbot: QtBot, starter_gguf: Path) -> Iterator[Callable[..., object]]:
    """Builds shown main windows over a given home (started, with the chat READY, unless
    ``start=False``); each is closed at the end, and none may leave its worker running."""
    from ui.chat.chat_view_model import ModelState
    from ui.main_window import MainWindow

    windows: list[MainWindow] = []

    def make(workspace: Workspace, start: bool = True) -> MainWindow:
        window = MainWindow(workspace)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        if start:
            window.start()
            qtbot.waitUntil(lambda: window.chat.state == ModelState.READY, timeout=WAIT_MS)
        return window

    yield make
    for window in windows:
        window.close()
        assert not window.bridge.client.alive, "a worker outlived its window"
