"""Message rendering: fences split right, long replies cut into the same pieces whether
streamed or finished, code highlighted with a working Copy link, streaming appends."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QGuiApplication, QTextDocument
from pytestqt.qtbot import QtBot

from app.chat.conversations import Message
from tests.benchmarks.bench_stream import reply_tokens
from ui.chat.markdown import MarkdownRenderer, split_fences, split_pieces, split_points
from ui.chat.message_widget import MessageWidget, stats_line, trimmed_note


def test_split_fences_keeps_prose_and_code_apart() -> None:
    text = "Intro\n\n```python\nx = 1\n```\nAfter\n\n~~~\nraw\n"
    segments = split_fences(text)
    assert [(s.kind, s.language) for s in segments] == [
        ("prose", ""), ("code", "python"), ("prose", ""), ("code", "")]
    assert segments[1].text == "x = 1" and segments[3].text == "raw"  # unclosed: to end


def test_pieces_are_the_same_streamed_or_finished() -> None:
    text = "".join(reply_tokens(4000))
    points = split_points(text)
    assert len(points) >= 4 and "".join(split_pieces(text)) == text
    for piece in split_pieces(text)[:-1]:
        assert piece.count("```") % 2 == 0  # never cut inside a code block
    grown = ""
    for i in range(0, len(text), 13):
        grown += text[i:i + 13]
        assert split_points(grown) == [p for p in points if p < len(grown)][
            :len(split_points(grown))]
    assert split_points(grown) == points


def test_code_block_is_highlighted_with_a_copy_link(qtbot: QtBot) -> None:
    renderer = MarkdownRenderer(QGuiApplication.palette())
    document = QTextDocument()
    blocks = renderer.render(document, "Use **this**:\n\n```python\ndef f():\n    return 1\n```")
    assert blocks == ["def f():\n    return 1"]
    html = document.toHtml()
    assert 'href="copy-code:0"' in html and "font-weight" in html  # bold + link
    code_colours = {f.charFormat().foreground().color().name() for f in _fragments(document)
                    if f.charFormat().fontFixedPitch() and f.text().strip()}
    assert len(code_colours) >= 2  # keywords, names and numbers differ: highlighted


def _fragments(document: QTextDocument) -> list:
    out = []
    block = document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            out.append(it.fragment())
            it += 1
        block = block.next()
    return out  # blocks run through table cells too, so code fragments are included


def test_message_widget_streams_then_renders(qtbot: QtBot) -> None:
    renderer = MarkdownRenderer(QGuiApplication.palette())
    widget = MessageWidget(None, renderer)
    qtbot.addWidget(widget)
    widget.show()
    text = "".join(reply_tokens(1500))
    for i in range(0, len(text), 40):
        widget.append(text[i:i + 40])
    assert len(widget.bodies) == len(split_pieces(text)) > 1
    assert "".join(b.plain_text for b in widget.bodies) == text
    message = Message(1, 1, 1, "assistant", text, "complete",
                      {"completion_tokens": 1500, "ttft_s": 0.12, "decode_tps": 98.5})
    widget.refresh(message, True)
    assert widget.needs_render and not widget.streaming  # plain kept, render queued
    assert widget.footer.text() == "1500 tokens · 0.12 s to first token · 98.5 tok/s"
    short = Message(2, 1, 1, "assistant", "```sh\nls\n```", "complete", None)
    widget.refresh(short, True)
    assert len(widget.bodies) == 1 and widget.body.code_blocks == ["ls"]
    widget.body.anchorClicked.emit(QUrl("copy-code:0"))
    assert QGuiApplication.clipboard().text() == "ls"


def test_stats_and_trim_notes_read_well() -> None:
    assert stats_line(None) == ""
    assert trimmed_note(1, 2048) == ("1 earlier message was left out so the conversation "
                                     "fits the model's context (2048 tokens).")
    assert trimmed_note(0) == ""
