"""Teaching a document (issue 27, item 4): drafted questions kept only when they ask
about their sentence, saved as corrections and held-out questions with their source,
answers judged against the document, and ``hearth docs draft`` / ``compare`` on the
real starter model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.chat.corrections import CorrectionStore
from app.cli.main import main
from app.db import MIGRATIONS, connect
from app.docs import teaching
from app.docs.answering import Answer, is_right
from app.docs.chunking import Chunk
from app.docs.store import DocumentStore, FileRecord, Question, StoredPassage
from app.models.library import STARTER_NAME
from app.workspace import Workspace

KILN_WASH = ("Kiln shelves are coated with kiln wash, a mixture of alumina and kaolin "
             "that stops glaze sticking to them.")
KILN = "The studio's kiln is a 90-litre electric top-loader."


def test_a_drafted_question_is_kept_only_when_it_asks_about_its_sentence() -> None:
    assert teaching.why_not("What is kiln wash?", KILN_WASH) == ""
    assert teaching.why_not("What are kiln shelves coated with?", KILN_WASH) == ""
    # What the starter model wrote for sentences of the kiln guide:
    assert teaching.why_not("What is the studio's most expensive car?", KILN) == \
        "not about the sentence"
    assert teaching.why_not("What is the answer to this question?", KILN) == \
        "not about the sentence"
    assert teaching.why_not("The answer to this question is:", KILN) == "not a question"
    assert teaching.why_not("Kiln?", KILN) == "too short"
    assert teaching.why_not("Is the studio's kiln a 90-litre electric top-loader?", KILN) \
        == "the question already says the answer"


def _passage(i: int, text: str, page: int | None = None) -> StoredPassage:
    return StoredPassage(i, "/docs/kiln.pdf", page, None, "Firing", text)


def test_sentences_are_picked_evenly_and_once_though_passages_overlap() -> None:
    first = f"# Firing\n{KILN_WASH} Recoat a shelf when the wash is worn through or flaking."
    second = ("Recoat a shelf when the wash is worn through or flaking. Short one.\n"
              "- Program 1 is the bisque firing, which rises slowly to cone 04.")
    picked = teaching.pick([_passage(1, first, 2), _passage(2, second, 3)], 10)
    assert [s for s, _ in picked] == [
        KILN_WASH, "Recoat a shelf when the wash is worn through or flaking.",
        "Program 1 is the bisque firing, which rises slowly to cone 04."]
    assert [w for _, w in picked] == ["kiln.pdf, page 2", "kiln.pdf, page 2",
                                      "kiln.pdf, page 3"]
    many = [_passage(i, f"Sentence number {i} says something about kilns.") for i in range(40)]
    spread = teaching.pick(many, 4)
    assert [s.split()[2] for s, _ in spread] == ["0", "10", "20", "30"]


def test_every_fourth_kept_draft_is_held_out_and_at_least_one_of_two() -> None:
    def drafts(n: int, dropped: tuple[int, ...] = ()) -> list[teaching.Draft]:
        out = [teaching.Draft(f"q{i}?", "a", "kiln.md", "too short" if i in dropped else "")
               for i in range(n)]
        teaching.hold_out(out)
        return out

    assert [d.held_out for d in drafts(8, dropped=(1,))] == \
        [False, False, False, False, True, False, False, False]  # the 4th and 8th kept
    assert [d.held_out for d in drafts(3)] == [False, False, True]
    assert [d.held_out for d in drafts(1)] == [False]


def _collection(store: DocumentStore, name: str) -> None:
    record = FileRecord(name, "/docs/kiln.md", "markdown", "0" * 64, 10, None, "test", 1,
                        [], "")
    store.replace_file(name, record, [Chunk(0, len(KILN_WASH), "", None, KILN_WASH)],
                       np.zeros((1, 4), dtype="f4"))


def test_drafts_become_corrections_and_held_out_questions_that_go_with_the_collection(
        workspace: Workspace) -> None:
    store, corrections = DocumentStore(workspace.library.conn), \
        CorrectionStore(workspace.library.conn)
    _collection(store, "kiln")
    drafts = [teaching.Draft("What is kiln wash?", KILN_WASH, "kiln.md"),
              teaching.Draft("What is the studio's car?", KILN, "kiln.md", "not about"),
              teaching.Draft("What are kiln shelves coated with?", KILN_WASH, "kiln.md",
                             held_out=True)]
    added = teaching.save(drafts, "kiln", STARTER_NAME, store, corrections)
    assert [(ex.prompt, ex.corrected, ex.rejected, ex.source, ex.model) for ex in added] == [
        ([{"role": "user", "content": "What is kiln wash?"}], KILN_WASH, "",
         "kiln: kiln.md", STARTER_NAME)]
    assert corrections.list()[0].source == "kiln: kiln.md"
    assert store.held_out("kiln") == [
        Question("What are kiln shelves coated with?", KILN_WASH, "kiln.md")]
    store.remove_collection("kiln")
    _collection(store, "kiln")
    assert store.held_out("kiln") == []  # they went with the collection
    assert len(corrections.list()) == 1  # a correction is the person's: it stays


def test_a_database_from_before_keeps_its_corrections(tmp_path: Path) -> None:
    path = tmp_path / "hearth.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE doc_questions")
    raw.execute("ALTER TABLE training_examples DROP COLUMN source")
    raw.execute("INSERT INTO training_examples (model, messages, rejected, created_at, "
                "updated_at) VALUES ('m', '[{\"role\": \"user\", \"content\": \"q\"}, "
                "{\"role\": \"assistant\", \"content\": \"a\"}]', 'r', 'x', 'x')")
    raw.execute(f"PRAGMA user_version={len(MIGRATIONS) - 1}")
    raw.commit()
    raw.close()
    db = connect(path)
    try:
        (ex,) = CorrectionStore(db).list()
        assert (ex.corrected, ex.rejected, ex.source) == ("a", "r", "")
    finally:
        db.close()


def test_an_answer_is_right_when_it_says_what_the_document_says() -> None:
    rent = Question("What rent does the trust pay the council for the orchard land?",
                    "one basket of apples a year")
    assert is_right(rent, "The trust pays one basket of apples each year.")
    assert not is_right(rent, "The trust pays a rent of 500 pounds a year.")
    assert not is_right(rent, "I do not know what the trust pays.")


def test_the_comparison_reads_as_a_table_and_as_json() -> None:
    q = [Question("What is kiln wash?", KILN_WASH, "kiln.md")]
    result = teaching.Comparison(q, [
        teaching.Way("base", [Answer("A kind of paint.", False)]),
        teaching.Way("base + documents", [Answer(KILN_WASH, True, ["kiln.md"])])])
    assert result.lines() == ["1 question about the document, answered right:",
                              "  base                 0 of 1",
                              "  base + documents     1 of 1",
                              "  (nothing taught yet: teach the corrections, then compare again)"]
    assert result.to_json()["ways"]["base + documents"]["answers"][0] == {
        "question": "What is kiln wash?", "expected": KILN_WASH, "answer": KILN_WASH,
        "right": True, "cited": ["kiln.md"]}


@pytest.mark.slow  # the chat worker and the embedding worker, through the CLI
@pytest.mark.timeout(600)
def test_hearth_docs_draft_and_compare_on_the_starter_model(
        home_dir: Path, starter_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Drafting with the real starter model, then the held-out questions asked of the
    base with and without the collection's passages (nothing taught yet)."""
    kiln = Path(__file__).parents[1] / "resources" / "docs_bench" / "kiln.md"
    assert main(["docs", "add", "-c", "kiln", str(kiln)]) == 0
    capsys.readouterr()
    assert main(["docs", "draft", "-c", "kiln", "-n", "16", "--json"]) == 0
    drafted = json.loads(capsys.readouterr().out)
    drafts = drafted["drafts"]
    assert len(drafts) == 16 and all(d["answer"] in kiln.read_text() for d in drafts)
    kept = [d for d in drafts if not d["dropped"]]
    held = [d for d in kept if d["held_out"]]
    assert held and len(drafted["corrections"]) == len(kept) - len(held)
    for d in kept:  # what is kept passed the check it was dropped by otherwise
        assert teaching.why_not(d["question"], d["answer"]) == ""
    assert main(["docs", "compare", "-c", "kiln", "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["taught"] is None and compared["questions"] == len(held)
    assert list(compared["ways"]) == ["base", "base + documents"]
    grounded = compared["ways"]["base + documents"]["answers"]
    assert all(a["cited"] and a["cited"][0].startswith("kiln.md") for a in grounded)
    assert all(not a["cited"] for a in compared["ways"]["base"]["answers"])
    print(json.dumps(compared, indent=1)[:3000])


def test_compare_refuses_a_questions_file_that_is_not_one(
        workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _collection(DocumentStore(workspace.library.conn), "kiln")
    assert main(["docs", "compare", "-c", "kiln"]) == 2
    assert "hearth docs draft -c kiln" in capsys.readouterr().err
    bad = tmp_path / "q.json"
    for text, said in (("{", "cannot read the questions"),
                       ('{"question": "q"}', "must hold a JSON list"),
                       ('[{"question": "What is kiln wash?"}]', "question 1: give a")):
        bad.write_text(text, "utf-8")
        assert main(["docs", "compare", "-c", "kiln", "--questions", str(bad)]) == 2
        assert said in capsys.readouterr().err


def test_a_stopped_draft_asks_the_model_nothing_more() -> None:
    """Stop is asked before each sentence: stopped, no more goes to the worker (here
    there is none to ask: a call would fail)."""
    passages = [_passage(i, f"Sentence number {i} says something about kilns.")
                for i in range(5)]
    assert teaching.draft(None, passages, 5, cancelled=lambda: True) == []
