"""Chat import within bounds (finding S7 of issue 24): only regular files are read, memory
is bounded by one entry rather than the file, and the person is told exactly what was
stored. The hostile files are the review's (probes/import_probe.py, import_dev.py)."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from app.chat import import_source
from app.chat.importer import ConversationImportError, import_file, read_conversations
from app.workspace import Workspace

HI = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def _peak_mib(work) -> tuple[object, float]:  # any call
    """What ``work()`` returned (or raised) and the most Python memory it held, in MiB."""
    tracemalloc.start()
    try:
        try:
            out: object = work()
        except ConversationImportError as exc:
            out = exc
        return out, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_a_link_to_a_device_is_refused_unread(tmp_path: Path) -> None:
    link = tmp_path / "conversations.json"
    link.symlink_to("/dev/zero")
    out, peak = _peak_mib(lambda: read_conversations(link))
    assert isinstance(out, ConversationImportError), out
    assert "not a regular file" in str(out) and peak < 16


def test_a_fifo_does_not_block_the_import(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(read_conversations(fifo))
        except ConversationImportError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    try:
        assert not reader.is_alive(), "the import is blocked on the FIFO"
        assert "not a regular file" in str(outcome[0])
    finally:
        if reader.is_alive():  # let a blocked reader go (the fix's absence)
            with open(fifo, "wb"):
                pass
            reader.join(5)


def test_memory_is_bounded_by_one_entry_not_by_the_file(
        tmp_path: Path, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = tmp_path / "flat.json"  # 2 MiB of [{},{},...]: ~150 MB as Python objects
    n = (2 << 20) // 3
    flat.write_text("[" + "{}," * (n - 1) + "{}]")
    out, peak = _peak_mib(lambda: import_file(workspace.store, flat))
    assert isinstance(out, ConversationImportError), out
    assert "holds more than 100,000 entries" in str(out) and peak < 32, peak
    # One entry of too many values is refused before it is parsed (a smaller cap here
    # only to keep the test quick under tracemalloc).
    monkeypatch.setattr(import_source, "MAX_RECORD_VALUES", 200_000)
    one = tmp_path / "one.json"
    one.write_text('[{"messages": [' + "{}," * 300_000 + "{}]}]")
    out, peak = _peak_mib(lambda: import_file(workspace.store, one))
    assert "more than 200,000 JSON values" in str(out) and peak < 32, peak
    assert workspace.store.list() == []


def test_entries_that_do_not_parse_are_problems_not_the_end(tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text(json.dumps(HI) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n"
                    + json.dumps(HI) + "\n")
    result = read_conversations(deep)
    assert len(result.conversations) == 2
    assert result.problems == ["Line 2 of deep.jsonl: nested too deeply"]
    bom = tmp_path / "bom.json"
    bom.write_bytes("\ufeff".encode() + json.dumps(HI).encode())
    assert len(read_conversations(bom).conversations) == 1
    listed = tmp_path / "listed.json"  # a broken element between two good ones
    listed.write_text(f'[{json.dumps(HI)}, {{"messages": oops}}, {json.dumps(HI)}]')
    result = read_conversations(listed)
    assert len(result.conversations) == 2
    assert result.problems[0].startswith("Conversation 2 of listed.json: not JSON")


def test_a_file_cut_short_keeps_and_counts_what_came_before(tmp_path: Path,
                                                            workspace: Workspace) -> None:
    cut = tmp_path / "cut.json"
    cut.write_text(f"[{json.dumps(HI)}, {json.dumps(HI)}, " + json.dumps(HI)[:20])
    report = import_file(workspace.store, cut)
    assert len(report.ids) == 2 == len(workspace.store.list())
    assert report.stopped and "cut short" in report.stopped


def test_the_window_says_exactly_what_was_imported(qtbot, workspace: Workspace,
                                                   tmp_path: Path) -> None:
    """A lone surrogate (valid JSON) in the third of three titles: before, two were
    stored and the window said "Nothing was imported"; importing again duplicated them."""
    from ui.main_window import MainWindow

    path = tmp_path / "sur.json"
    path.write_text('[{"title":"ok1","messages":[{"role":"user","content":"a"}]},'
                    '{"title":"ok2","messages":[{"role":"user","content":"b"}]},'
                    '{"title":"bad \\ud800","messages":[{"role":"user","content":"c \\udfff"}]}]')
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(window.menus.importer.finished, timeout=10_000) as done:
            window.menus.importer.start(path)
        assert done.args[0] == "Imported 3 conversations from sur.json"
        titles = sorted(c.title for c in workspace.store.list())
        assert titles == ["bad \ufffd", "ok1", "ok2"]
        cut = tmp_path / "cut.json"
        cut.write_text(f"[{json.dumps(HI)}, " + json.dumps(HI)[:20])
        with qtbot.waitSignal(window.menus.importer.finished, timeout=10_000) as done:
            window.menus.importer.start(cut)
        summary, problems = done.args
        assert summary == ("Imported 1 conversation from cut.json; the rest of the file "
                           "was not imported")
        assert "cut short" in problems[0]
        assert len(workspace.store.list()) == 4
    finally:
        if window.menus.importer.box is not None:
            window.menus.importer.box.close()
        window.close()


@pytest.mark.parametrize("name", ["a.json", "a.jsonl"])
def test_ordinary_files_still_import(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith("l"):
        path.write_text("\n".join(json.dumps(HI) for _ in range(3)) + "\n")
    else:
        path.write_text(json.dumps([HI, HI, HI], indent=2))
    result = read_conversations(path)
    assert len(result.conversations) == 3 and not result.problems
