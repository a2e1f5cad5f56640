"""Line breaks a person wrote are kept, and a code fence does not show as raw text while
a reply streams (issue 15's walkthrough)."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication, QTextDocument
from pytestqt.qtbot import QtBot

from ui.chat.markdown import MarkdownRenderer
from ui.chat.message_widget import MessageWidget

POEM = "Roses are red,\nviolets are blue,\nsugar is sweet,\nand so are you."


def _lines(document: QTextDocument) -> list[str]:
    """What a reader sees, line by line (a hard break is U+2028 inside a block)."""
    text = document.toRawText().replace("\u2028", "\n").replace("\u2029", "\n")
    return [line for line in text.split("\n") if line.strip()]


def test_a_poem_keeps_its_four_lines(qtbot: QtBot) -> None:
    renderer = MarkdownRenderer(QGuiApplication.palette())
    document = QTextDocument()
    renderer.render(document, f"Here is a poem:\n\n{POEM}\n\n- a list\n- still a list")
    assert _lines(document) == ["Here is a poem:", *POEM.split("\n"), "a list",
                                "still a list"]


def test_markdown_that_spans_lines_still_reads_as_markdown(qtbot: QtBot) -> None:
    """Headings under a line of = and tables are not broken by the kept line breaks."""
    renderer = MarkdownRenderer(QGuiApplication.palette())
    document = QTextDocument()
    renderer.render(document, "Title\n=====\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert document.begin().blockFormat().headingLevel() == 1
    assert "=" not in document.toPlainText() and "|" not in document.toPlainText()


def test_an_open_code_fence_is_not_shown_raw_while_streaming(qtbot: QtBot) -> None:
    widget = MessageWidget(None, MarkdownRenderer(QGuiApplication.palette()))
    qtbot.addWidget(widget)
    widget.show()
    widget.begin_stream()
    for chunk in ("Try this:\n", "``", "`pyth", "on\n", "print(1)\n", "x = 2"):
        widget.append(chunk)
        assert "`" not in widget.body.toPlainText()
    shown = widget.body.toPlainText()
    assert "Try this:" in shown and "print(1)\nx = 2" in shown and "python" in shown
    code = widget.body.document().find("print(1)")
    assert code.charFormat().fontFixedPitch()  # shown as code, before the fence closes
    widget.append("\n```\nDone.")
    assert "`" not in widget.body.toPlainText()
    done = widget.body.document().find("Done.")
    assert not done.charFormat().fontFixedPitch()
    assert widget.text() == "Try this:\n```python\nprint(1)\nx = 2\n```\nDone."
