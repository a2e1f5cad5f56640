"""Teach from chat: a correction becomes a training example with its rejected original."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.chat.conversations import CANCELLED
from app.chat.corrections import CorrectionStore
from app.workspace import Workspace


def test_a_correction_snapshots_the_conversation(workspace: Workspace, tmp_path: Path) -> None:
    store = workspace.store
    conv = store.create(title="facts", model="smol", system_prompt="Be accurate.")
    store.add_message(conv.id, "user", "What is the capital of Zorbania?")
    wrong = store.add_message(conv.id, "assistant", "Paris.")
    store.add_message(conv.id, "user", "Are you sure?")
    store.add_message(conv.id, "assistant", "Yes.")
    corrections = CorrectionStore(workspace.library.conn)

    example = corrections.add_from_conversation(store, wrong.id, "Quillport.")
    assert example.messages == [
        {"role": "system", "content": "Be accurate."},
        {"role": "user", "content": "What is the capital of Zorbania?"},
        {"role": "assistant", "content": "Quillport."},
    ]
    assert example.rejected == "Paris." and example.model == "smol"
    assert corrections.count() == 1

    store.delete(conv.id)  # the collected example outlives its conversation
    kept = corrections.get(example.id)
    assert kept.conversation_id is None and kept.corrected == "Quillport."

    corrections.update(example.id, "Quillport, on the river Zorb.")
    sft = tmp_path / "sft.jsonl"
    assert corrections.export_jsonl(sft) == 1
    record = json.loads(sft.read_text())
    assert record["messages"][-1]["content"] == "Quillport, on the river Zorb."
    pref = tmp_path / "pref.jsonl"
    corrections.export_jsonl(pref, preference=True)
    assert json.loads(pref.read_text())["rejected"] == "Paris."
    corrections.delete(example.id)
    assert corrections.list() == []


def test_only_assistant_replies_with_text_can_be_corrected(workspace: Workspace) -> None:
    conv = workspace.store.create()
    question = workspace.store.add_message(conv.id, "user", "Hi")
    reply = workspace.store.add_message(conv.id, "assistant", "Hello")
    corrections = CorrectionStore(workspace.library.conn)
    with pytest.raises(ValueError, match="assistant"):
        corrections.add_from_conversation(workspace.store, question.id, "x")
    with pytest.raises(ValueError, match="empty"):
        corrections.add_from_conversation(workspace.store, reply.id, "  ")


def test_a_reply_cancelled_before_its_first_token_does_not_shift_the_example(
        workspace: Workspace) -> None:
    """A reply stopped before any token is stored empty (status cancelled); the prompt
    leaves it out, and the saved example must still end at the corrected reply."""
    store = workspace.store
    conv = store.create(title="facts", model="smol")
    store.add_message(conv.id, "user", "What is the capital of Zorbania?")
    store.add_message(conv.id, "assistant", "", status=CANCELLED)  # stopped at once
    store.add_message(conv.id, "user", "What is the capital of Zorbania? Please answer.")
    wrong = store.add_message(conv.id, "assistant", "Paris.")
    store.add_message(conv.id, "user", "Thanks.")
    corrections = CorrectionStore(workspace.library.conn)

    example = corrections.add_from_conversation(store, wrong.id, "Quillport.")
    assert example.messages == [
        {"role": "user", "content": "What is the capital of Zorbania?"},
        {"role": "user", "content": "What is the capital of Zorbania? Please answer."},
        {"role": "assistant", "content": "Quillport."},
    ]
    assert example.rejected == "Paris."
    assert all(m["content"] != "Paris." for m in example.messages)  # never trained on


def test_a_snapshot_is_named_by_its_content_and_taken_once(workspace: Workspace,
                                                           tmp_path: Path) -> None:
    store = workspace.store
    conv = store.create(model="smol")
    store.add_message(conv.id, "user", "What is the capital of Zorbania?")
    wrong = store.add_message(conv.id, "assistant", "Paris.")
    corrections = CorrectionStore(workspace.library.conn)
    example = corrections.add_from_conversation(store, wrong.id, "Quillport.")
    folder = tmp_path / "datasets"
    first = corrections.snapshot(folder)
    assert first.parent == folder and first.name.startswith("corrections-")
    assert [json.loads(line) for line in first.read_text().splitlines()] == corrections.rows()
    assert corrections.snapshot(folder) == first  # nothing changed: the same file
    corrections.update(example.id, "Quillport, on the river Zorb.")
    second = corrections.snapshot(folder)
    assert second != first and first.exists()  # a run that trained on the first keeps it
    assert sorted(p.name for p in folder.iterdir()) == sorted([first.name, second.name])
