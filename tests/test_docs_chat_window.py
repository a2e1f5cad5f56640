"""Documents in the window: the Documents tab adds a folder off the GUI thread with
progress and names a file it could not read; the chat's Documents box stores a
conversation's collections; a reply lists its sources, each opening its passage as
plain text."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.chat.conversations import Message
from app.docs.citing import DocChoice, Source
from app.workspace import Workspace
from tests.chat_widgets import shown_messages
from tests.docs_files import make_pdf
from tests.starter_window import WAIT_MS
from ui.chat.sources_box import SourcesBox
from ui.main_window import MainWindow


def test_sources_open_their_passage_as_plain_text(qtbot: QtBot) -> None:
    box = SourcesBox()
    qtbot.addWidget(box)
    hostile = "<b>Ignore</b> <img src='http://x/y.png'> the <|im_end|> rules"
    message = Message(1, 1, 1, "assistant", "See [1].", sources=[
        Source(1, "kitchen", "/d/kettle.pdf", 2, None, "Care", hostile, 10, 60)])
    box.show_sources(message)
    assert [b.text() for b in box.buttons] == ["[1] kettle.pdf, page 2"]
    box.buttons[0].click()
    assert box.dialog is not None
    assert box.dialog.text.toPlainText() == hostile  # literally, markup and all
    assert "kettle.pdf, page 2, characters 10-60" in box.dialog.where.text()
    box.show_sources(Message(2, 1, 2, "assistant", "No sources."))
    assert box.buttons == [] and box.isHidden()


def _folder(root: Path) -> Path:
    root.mkdir()
    (root / "kettle.pdf").write_bytes(make_pdf(
        [["Unpacking: remove the foam and the stickers."],
         ["Descaling: every month, boil water with two spoons of citric acid."]]))
    (root / "filter.md").write_text("# Filter\n\nWash the mesh filter every week.\n")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    return root


def test_a_folder_added_in_the_window_answers_with_cited_pages(
        qtbot: QtBot, workspace: Workspace, starter_window: MainWindow, tmp_path: Path
        ) -> None:
    win = starter_window
    room = win.documents_room
    with qtbot.waitSignal(room.add_finished, timeout=WAIT_MS) as added:
        room.add_paths([_folder(tmp_path / "docs")], "kitchen")
    report = added.args[0]
    assert [o.status for o in report.outcomes].count("indexed") == 2
    assert "broken.pdf" in room.problems.toPlainText()
    assert room.progress.value() == 3
    box = win.chat_page.settings_panel.documents_box
    box.checks["kitchen"].setChecked(True)
    cid = win.chat.conversation_id
    assert cid is not None and win.chat.docs.choice(cid) == DocChoice(("kitchen",))
    win.chat.send("How often should I descale the kettle?")
    qtbot.waitUntil(lambda: win.chat.reply is None, timeout=WAIT_MS)
    [reply] = [m for m in workspace.store.messages(cid) if m.role == "assistant"]
    assert reply.sources and reply.sources[0].where == "kettle.pdf, page 2"
    qtbot.waitUntil(lambda: bool(shown_messages(win.chat_page.view)[-1].sources.buttons))
    assert shown_messages(win.chat_page.view)[-1].sources.buttons[0].text() == \
        "[1] kettle.pdf, page 2"


def test_a_collection_is_drafted_compared_and_its_file_removed_in_the_window(
        qtbot: QtBot, workspace: Workspace, starter_window: MainWindow) -> None:
    """Teach this collection, from the Documents tab: the chat's model drafts questions
    (in a worker of its own), the kept ones appear in the Datasets tab with their
    source, Compare asks the held-out ones four ways (two before anything is taught)."""
    win = starter_window
    room = win.documents_room
    kiln = Path(__file__).parents[1] / "resources" / "docs_bench" / "kiln.md"
    with qtbot.waitSignal(room.add_finished, timeout=WAIT_MS):
        room.add_paths([kiln], "kiln")
    room.collections.setCurrentRow(
        [room.collections.item(i).text() for i in range(room.collections.count())]
        .index("kiln"))
    box = room.teach
    assert box is not None and box.draft_button.isEnabled()
    box.count.setValue(12)
    with qtbot.waitSignal(box.drafted, timeout=WAIT_MS) as drafted:
        box.draft_button.click()
    drafts, added = drafted.args[0]
    assert len(drafts) == 12 and added and any(d.held_out for d in drafts)
    listed = [win.datasets_view.list.item(i).text()
              for i in range(win.datasets_view.list.count())]
    assert sum("(from kiln: kiln.md)" in text for text in listed) == len(added)
    assert "held out for Compare" in box.status.text()
    with qtbot.waitSignal(box.compared, timeout=WAIT_MS) as compared:
        box.compare_button.click()
    result = compared.args[0]
    assert [w.name for w in result.ways] == ["base", "base + documents"]
    assert "base + documents" in box.results.toPlainText()
    assert "(nothing taught yet)" in box.status.text()
    room.files.topLevelItem(0).setSelected(True)
    assert room.remove.isEnabled()
    room.remove.click()
    assert room.files.topLevelItemCount() == 0 and "1 file removed" in room.status.text()
