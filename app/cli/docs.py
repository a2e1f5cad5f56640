"""``hearth docs``: collections of documents to search, chat with, and teach.

``add`` prints a line per file as it goes (indexed, unchanged, or skipped with the
reason), so a Ctrl-C part-way shows what is kept; it exits 2 when any file was skipped.
``search`` prints passages with their source, page and offsets; their text is the
document's own, written through the CLI's printable stream like every stranger's text.
``draft`` writes questions about a collection with the chat model and adds them as
corrections for Teach (a quarter held out); ``compare`` asks the held-out ones of the
base and the taught version, each with and without the passages
(:mod:`app.docs.teaching`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.cli.common import pick_model
from app.cli.progress import ProgressLine
from app.cli.terminal import printable
from app.docs import teaching
from app.docs.embedder import Embedder
from app.docs.indexer import DocumentIndexer, FileOutcome
from app.docs.search import DocumentSearch, Passage
from app.docs.store import DEFAULT_COLLECTION, DocumentStore, Question
from app.errors import BadInput, ExitCode
from app.models.library import ModelRecord
from app.models.versions import ActiveVersions
from app.units import format_bytes
from app.workspace import Workspace


def add_parser(sub: Any) -> None:
    docs = sub.add_parser("docs", help="document collections: add, list, remove, search") \
        .add_subparsers(dest="docs_command", required=True)
    add = docs.add_parser("add", help="add files or folders (PDF, DOCX, HTML, Markdown, "
                          "text); a file added again is read again only if it changed")
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("-c", "--collection", default=DEFAULT_COLLECTION)
    ls = docs.add_parser("list", help="the collections, or one collection's files")
    ls.add_argument("-c", "--collection")
    ls.add_argument("--json", action="store_true")
    rm = docs.add_parser("rm", help="forget files (a folder: the files under it), or a "
                         "whole collection when no path is given")
    rm.add_argument("paths", nargs="*", metavar="PATH")
    rm.add_argument("-c", "--collection",
                    help=f"the collection (default for paths: {DEFAULT_COLLECTION}; "
                    "without paths it must be named)")
    search = docs.add_parser("search", help="the passages that best answer a query")
    search.add_argument("query")
    search.add_argument("-c", "--collection", action="append",
                        help="search this collection (repeatable; default: all)")
    search.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    search.add_argument("--mode", choices=("hybrid", "bm25", "vector"), default="hybrid")
    search.add_argument("--json", action="store_true")
    drafting = docs.add_parser("draft", help="draft questions about a collection with the "
                               "chat model, as corrections for Teach (a quarter held out "
                               "for compare)")
    drafting.add_argument("-c", "--collection", required=True)
    drafting.add_argument("-m", "--model", help="the model to teach (default: the starter)")
    drafting.add_argument("-n", type=int, default=12,
                          help="sentences to draft questions for (default 12)")
    drafting.add_argument("--json", action="store_true")
    comparing = docs.add_parser("compare", help="the held-out questions answered by the "
                                "base and the taught version, with and without the "
                                "collection's passages")
    comparing.add_argument("-c", "--collection", required=True)
    comparing.add_argument("-m", "--model", help="the base model (default: the starter)")
    comparing.add_argument("--questions", type=Path, metavar="FILE",
                           help="ask these instead of the held-out drafts: a JSON list of "
                           '{"question": ..., "answer": ...} (what a right answer says)')
    comparing.add_argument("--json", action="store_true")


def writes(args: argparse.Namespace) -> bool:
    """Whether the command changes the home (and so holds its lock)."""
    return args.docs_command in ("add", "rm", "draft")


def docs(ws: Workspace, args: argparse.Namespace) -> int:
    store = DocumentStore(ws.library.conn)
    command = {"add": _add, "list": _list, "rm": _rm, "search": _search, "draft": _draft,
               "compare": _compare}[args.docs_command]
    return command(ws, store, args)


def _add(ws: Workspace, store: DocumentStore, args: argparse.Namespace) -> int:
    seen: list[FileOutcome] = []
    bar = ProgressLine(sys.stderr)  # a long file's passages, redrawn on a terminal only

    def embedding(path: Path, done: int, total: int) -> None:
        if bar.tty:
            bar.show(done / total, f"{path.name}: {done}/{total} passages")

    def shown(outcome: FileOutcome, done: int, total: int) -> None:
        bar.end_line()
        seen.append(outcome)
        where = f"[{done}/{total}]"
        if outcome.status == "skipped":
            print(f"{where} skipped {outcome.path}: {outcome.reason}", file=sys.stderr)
            return
        what = (f"{outcome.chunks} passages" if outcome.status == "indexed"
                else "unchanged")
        notes = "".join(f"; {n}" for n in outcome.notes)
        print(f"{where} {outcome.status} {outcome.path} ({what}{notes})", flush=True)

    try:
        with Embedder.for_home(ws.home) as embedder:
            indexer = DocumentIndexer(store, embedder.embed, on_file=shown,
                                      on_passages=embedding)
            report = indexer.add([Path(p) for p in args.paths], args.collection)
    except KeyboardInterrupt:
        bar.end_line()
        kept = sum(o.status == "indexed" for o in seen)
        print(f"Stopped: the {kept} files indexed before are kept; the file being read "
              "was left as it was. Add again to go on (unchanged files are skipped).",
              file=sys.stderr)
        return ExitCode.CANCELLED
    print(f"{args.collection}: {report.count('indexed')} indexed, "
          f"{report.count('unchanged')} unchanged, {report.count('skipped')} skipped "
          f"in {report.seconds:.1f} s")
    return ExitCode.BAD_INPUT if report.count("skipped") else ExitCode.OK


def _list(ws: Workspace, store: DocumentStore, args: argparse.Namespace) -> int:
    if args.collection:
        store.collection_ids([args.collection])  # an unknown name says so
        files = store.files(args.collection)
        if args.json:
            print(json.dumps([asdict(f) for f in files], indent=2))
            return ExitCode.OK
        for f in files:
            pages = f" {f.pages} pages," if f.pages else ""
            print(f"{f.path}  ({f.kind},{pages} {format_bytes(f.size)}, {f.chunks} passages)")
        return ExitCode.OK
    collections = store.collections()
    if args.json:
        print(json.dumps([asdict(c) for c in collections], indent=2))
    elif not collections:
        print("No collections yet. Add documents with: hearth docs add PATH")
    else:
        for c in collections:
            print(f"{c.name}: {c.files} files, {c.chunks} passages, {format_bytes(c.bytes)}")
    return ExitCode.OK


def _rm(ws: Workspace, store: DocumentStore, args: argparse.Namespace) -> int:
    if not args.paths:
        if not args.collection:  # a bare "hearth docs rm" must not empty anything
            raise BadInput("name what to remove: hearth docs rm PATH... or, for a whole "
                           "collection, hearth docs rm -c NAME")
        removed = store.remove_collection(args.collection)
        print(f"removed the collection {args.collection} ({removed} files)")
        return ExitCode.OK
    collection = args.collection or DEFAULT_COLLECTION
    removed = store.remove_paths(collection, [os.path.abspath(p) for p in args.paths])
    if not removed:
        raise BadInput(f"none of those paths is in the collection {collection}")
    print(f"removed {removed} files from {collection}")
    return ExitCode.OK


def _search(ws: Workspace, store: DocumentStore, args: argparse.Namespace) -> int:
    if args.k < 1:
        raise BadInput("-k must be at least 1")
    with contextlib.ExitStack() as stack:
        embedder = (None if args.mode == "bm25" else  # BM25 alone needs no model
                    stack.enter_context(Embedder.for_home(ws.home)))
        search = DocumentSearch(store, embedder.embed_query if embedder else None)
        passages = search.search(args.query, args.k, args.collection, args.mode)
    if args.json:
        print(json.dumps([asdict(p) for p in passages], indent=2, ensure_ascii=False))
        return ExitCode.OK
    if not passages:
        print("No passage matches.")
    for number, p in enumerate(passages, start=1):
        print(f"[{number}] {_where(p)}  score {p.score:.4f}")
        print("    " + p.text.replace("\n", "\n    "))
    return ExitCode.OK


def _where(p: Passage) -> str:
    page = (f", pages {p.page}-{p.page_end}" if p.page_end is not None else
            f", page {p.page}" if p.page is not None else "")
    heading = f" — {p.heading}" if p.heading else ""
    return f"{p.source}{page}, characters {p.char_start}-{p.char_end}{heading}"


def _questions_file(path: Path) -> list[Question]:
    """A person's own questions for ``compare``; a file that is not one says where."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read the questions in {path}: {exc}") from exc
    if not isinstance(raw, list):
        raise BadInput(f"{path} must hold a JSON list of questions")
    out = []
    for i, item in enumerate(raw, start=1):
        question = item.get("question", item.get("q")) if isinstance(item, dict) else None
        answer = item.get("answer") if isinstance(item, dict) else None
        if not isinstance(question, str) or not isinstance(answer, str) \
                or not question.strip() or not answer.strip():
            raise BadInput(f"{path}, question {i}: give a \"question\" and the "
                           "\"answer\" a right reply says, both as text")
        out.append(Question(question, answer, str(item.get("doc", ""))))
    return out


def _base(ws: Workspace, name: str | None) -> ModelRecord:
    """The base model named (a taught version's name stands for its base)."""
    record = pick_model(ws, name)
    return ws.library.get(ActiveVersions(ws.home).base_name(record.name))


def _draft(ws: Workspace, store: DocumentStore, args: argparse.Namespace) -> int:
    if args.n < 1:
        raise BadInput("-n must be at least 1")
    base = _base(ws, args.model)
    bar = ProgressLine(sys.stderr)
    drafts, added = teaching.draft_collection(
        ws, args.collection, base, args.n,
        lambda done, total: bar.show(done / total, f"{done}/{total} questions drafted")
        if bar.tty else None)
    bar.end_line()
    if args.json:
        print(json.dumps({"drafts": [asdict(d) for d in drafts],
                          "corrections": [ex.id for ex in added]}, indent=2,
                         ensure_ascii=False))
        return ExitCode.OK
    for d in drafts:
        print(printable(d.line()))
    held = sum(d.held_out for d in drafts)
    print(f"{len(added)} questions added as corrections of {base.name}, {held} held out "
          f"for comparing, {sum(bool(d.dropped) for d in drafts)} dropped. Review them "
          "in the Datasets tab (edit or remove), then: hearth teach; then: hearth docs "
          f"compare -c {args.collection}")
    return ExitCode.OK


def _compare(ws: Workspace, store: DocumentStore, args: argparse.Namespace) -> int:
    questions = _questions_file(args.questions) if args.questions is not None else None
    result = teaching.compare_collection(ws, args.collection, _base(ws, args.model),
                                         questions)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return ExitCode.OK
    print(f"{args.collection}: {result.base}"
          + (f" against {result.taught}" if result.taught else ""))
    for line in result.lines():
        print(line)
    return ExitCode.OK
