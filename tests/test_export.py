"""Exports: Markdown reads like the conversation, JSON is an OpenAI messages body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.chat.conversations import TRUNCATED
from app.chat.export import to_markdown, to_openai, write_export
from app.workspace import Workspace


def _conversation(workspace: Workspace) -> int:
    store = workspace.store
    conv = store.create(title="Sorting", model="SmolLM2", system_prompt="Be terse.",
                        settings={"sampling": {"temperature": 0.2, "seed": 7}})
    store.add_message(conv.id, "user", "Sort [3, 1, 2] in Python")
    store.add_message(conv.id, "assistant", "```python\nsorted([3, 1, 2])\n```", TRUNCATED)
    return conv.id


def test_openai_json(workspace: Workspace, tmp_path: Path) -> None:
    cid = _conversation(workspace)
    conv, messages = workspace.store.get(cid), workspace.store.messages(cid)
    body = to_openai(conv, messages)
    assert body == {"model": "SmolLM2", "temperature": 0.2, "seed": 7, "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Sort [3, 1, 2] in Python"},
        {"role": "assistant", "content": "```python\nsorted([3, 1, 2])\n```"}]}
    written = write_export(tmp_path / "chat.json", conv, messages)
    assert json.loads(written.read_text("utf-8")) == body


def test_markdown(workspace: Workspace, tmp_path: Path) -> None:
    cid = _conversation(workspace)
    conv, messages = workspace.store.get(cid), workspace.store.messages(cid)
    text = to_markdown(conv, messages)
    assert text.startswith("# Sorting\n")
    assert "Model: SmolLM2" in text and "## System\n\nBe terse." in text
    assert "## You\n\nSort [3, 1, 2] in Python" in text
    assert "## Assistant\n\n```python\nsorted([3, 1, 2])\n```\n\n*(cut by the token limit)*" \
        in text
    assert write_export(tmp_path / "chat.md", conv, messages).read_text("utf-8") == text
    with pytest.raises(ValueError, match="use a .md or .json"):
        write_export(tmp_path / "chat.pdf", conv, messages)
