"""``hearth bench docs``: how well document search finds the passage that answers.

Command: ``hearth bench docs [--json] [--scale 100000]``

The set is the project's own (``resources/docs_bench/``): four Markdown documents about
made-up subjects, so no model has seen them, and 83 questions, each naming a phrase
that appears once, in the passage that answers it: 71 ask in other words than the
passage uses ("paraphrase"), 12 look up a name, code or number as a person types it
("lookup"), the case a small embedding model may blur. It is indexed into a database
of its own (never the person's), then for each question and each mode (BM25 alone,
vectors alone, the two fused) the top five passages are taken: recall@5 is the share
of questions whose answer phrase is in one of them; recall@1 (the passage a reply
would cite first) and MRR@5 say how high. BM25 alone is the baseline the other two are
read against.

The same documents are also rendered as PDFs and searched through the PDF path, with
the page each found answer is cited on checked (:mod:`app.bench.docs_pdf`).

Also measured: index time per MB (reading, chunking, embedding, writing), query
latency per mode (the vector modes include embedding the query), and the brute-force
vector scan at ``--scale`` synthetic passages (load from SQLite, then one query), the
figure behind storing vectors as blobs instead of a vector extension. Load averages are
printed beside the timings: the machines this runs on are shared.

With ``--answers`` the chat model also answers every question, alone and from the
passages found (:mod:`app.bench.docs_answers`): answer correctness with and without
retrieval.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.docs_answers import answer_part
from app.bench.docs_pdf import pdf_part
from app.db import connect
from app.docs.chunking import Chunk
from app.docs.embedder import Embedder
from app.docs.indexer import DocumentIndexer
from app.docs.search import DocumentSearch, Mode
from app.docs.store import DocumentStore, FileRecord
from app.models.library import ModelRecord
from app.workspace import Workspace

MODES: tuple[Mode, ...] = ("bm25", "vector", "hybrid")
K = 5


def bench_files() -> tuple[Path, list[dict[str, str]]]:
    folder = Path(str(resources.files("resources") / "docs_bench"))
    questions = json.loads((folder / "questions.json").read_text("utf-8"))
    return folder, questions


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run_docs_bench(ws: Workspace, scale: int = 100_000,
                   embedder: Embedder | None = None,
                   answers: ModelRecord | None = None) -> dict[str, Any]:
    """The figures; ``embedder``, when given, is a started worker to use (and leave);
    ``answers``: the model whose answers are judged too."""
    with contextlib.ExitStack() as stack:
        if embedder is None:
            embedder = stack.enter_context(Embedder.for_home(ws.home))
        return _run(embedder, scale, ws if answers else None, answers)


def _run(embedder: Embedder, scale: int, ws: Workspace | None,
         answers: ModelRecord | None) -> dict[str, Any]:
    folder, questions = bench_files()
    loads = {"before": _load()}
    with tempfile.TemporaryDirectory(prefix="hearth-bench-docs-") as tmp:
        db = connect(Path(tmp) / "bench.db")
        try:
            store = DocumentStore(db)
            started = time.perf_counter()
            embedder.embed(["warm up"])  # torch's first call allocates: not indexing
            load_s = time.perf_counter() - started
            report = DocumentIndexer(store, embedder.embed).add([folder], "bench")
            megabytes = sum(o.bytes for o in report.outcomes) / 1e6
            chunks = sum(o.chunks for o in report.outcomes)
            loads["after_index"] = _load()
            search = DocumentSearch(store, embedder.embed_query)
            recall, latency = _ask(search, questions)
            loads["after_queries"] = _load()
            pdf = pdf_part(store, search, DocumentIndexer(store, embedder.embed), folder,
                           questions, Path(tmp))
            scan = _scan(Path(tmp), scale, embedder.embed_query("a question")) if scale else {}
            answered = (answer_part(ws, answers, search, questions)
                        if ws is not None and answers is not None else None)
        finally:
            db.close()
    loads["after_scan"] = _load()
    result: dict[str, Any] = {
        "questions": len(questions), "documents": len(report.outcomes),
        "passages": chunks, "megabytes": round(megabytes, 4),
        "model_start_s": round(load_s, 2),
        "index_s": round(report.seconds, 2),
        "index_s_per_mb": round(report.seconds / megabytes, 1) if megabytes else None,
        "passages_per_s": round(chunks / report.seconds, 1) if report.seconds else None,
        "recall_at_5": recall, "query_ms_median": latency, "pdf": pdf, "scan": scan,
        "answers": answered, "load_average": loads}
    result["summary"] = _summary(result)
    return result


def _ask(search: DocumentSearch, questions: list[dict[str, str]]
         ) -> tuple[dict[str, Any], dict[str, float]]:
    """Recall@5 per mode (in all, and per kind of question) and median query time per
    mode; the modes alternate per question so a burst of load on the shared machine
    falls on all three alike."""
    hits: dict[tuple[str, str], int] = {}
    firsts = dict.fromkeys(MODES, 0)
    reciprocal = dict.fromkeys(MODES, 0.0)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for q in questions:
        for mode in MODES:
            t0 = time.perf_counter()
            found = search.search(q["q"], K, ["bench"], mode)
            times[mode].append(time.perf_counter() - t0)
            ranks = [i for i, p in enumerate(found, start=1)
                     if p.source.endswith(q["doc"]) and q["answer"] in p.text]
            for group in ("all", q["kind"]):
                hits[group, mode] = hits.get((group, mode), 0) + bool(ranks)
            firsts[mode] += ranks[:1] == [1]
            reciprocal[mode] += 1 / ranks[0] if ranks else 0.0
    asked = {"all": len(questions)}
    for q in questions:
        asked[q["kind"]] = asked.get(q["kind"], 0) + 1
    recall: dict[str, Any] = {m: round(hits["all", m] / len(questions), 3) for m in MODES}
    recall["at_1"] = {m: round(firsts[m] / len(questions), 3) for m in MODES}
    recall["mrr_at_5"] = {m: round(reciprocal[m] / len(questions), 3) for m in MODES}
    recall["by_kind"] = {kind: {"questions": n, **{m: round(hits.get((kind, m), 0) / n, 3)
                                                   for m in MODES}}
                         for kind, n in asked.items() if kind != "all"}
    latency: dict[str, float] = {m: round(statistics.median(times[m]) * 1000, 1)
                                 for m in MODES}
    return recall, latency


def _scan(tmp: Path, n: int, query: np.ndarray) -> dict[str, Any]:
    """Brute-force cosine over ``n`` stored passages: SQLite's blobs into one matrix (once
    per change of the tables), then each query's matrix product."""
    db = connect(tmp / "scale.db")
    try:
        store = DocumentStore(db)
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((n, query.shape[0])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        chunks = [Chunk(i * 10, i * 10 + 9, "", None, f"passage {i}") for i in range(n)]
        store.replace_file("scale", FileRecord("scale", "/synthetic", "text", "-", n * 10,
                                               None, "synthetic", n, [], ""), chunks, vectors)
        search = DocumentSearch(store, lambda _text: query)
        ids = store.collection_ids(["scale"])
        t0 = time.perf_counter()
        search.vector_ids("q", ids, K)
        first = time.perf_counter() - t0
        rounds = []
        for _ in range(5):
            t0 = time.perf_counter()
            search.vector_ids("q", ids, K)
            rounds.append(time.perf_counter() - t0)
        return {"passages": n, "first_query_ms": round(first * 1000, 1),
                "cached_query_ms": round(min(rounds) * 1000, 1),
                "matrix_mb": round(n * query.shape[0] * 4 / 1e6, 1)}
    finally:
        db.close()


def _summary(r: dict[str, Any]) -> list[str]:
    rec, lat = r["recall_at_5"], r["query_ms_median"]
    lines = [
        f"{r['questions']} questions over {r['documents']} documents, {r['passages']} "
        f"passages ({r['megabytes']:.3f} MB)",
        f"recall@5: BM25 {rec['bm25']:.3f} (baseline), vectors {rec['vector']:.3f}, "
        f"hybrid {rec['hybrid']:.3f} ({rec['hybrid'] / rec['bm25']:.2f}x BM25)"
        if rec["bm25"] else f"recall@5: {rec}",
        f"  recall@1: BM25 {rec['at_1']['bm25']:.3f}, vectors {rec['at_1']['vector']:.3f}, "
        f"hybrid {rec['at_1']['hybrid']:.3f}; MRR@5: BM25 {rec['mrr_at_5']['bm25']:.3f}, "
        f"vectors {rec['mrr_at_5']['vector']:.3f}, hybrid {rec['mrr_at_5']['hybrid']:.3f}",
        *(f"  {kind} ({r['questions']} questions): BM25 {r['bm25']:.3f}, vectors "
          f"{r['vector']:.3f}, hybrid {r['hybrid']:.3f}" for kind, r in rec["by_kind"].items()),
        f"index: {r['index_s']:.2f} s, {r['index_s_per_mb']} s per MB, "
        f"{r['passages_per_s']} passages/s (model start {r['model_start_s']:.1f} s)",
        f"query median: BM25 {lat['bm25']} ms, vectors {lat['vector']} ms, "
        f"hybrid {lat['hybrid']} ms (vector modes embed the query)"]
    pdf = r["pdf"]
    lines.append(f"as PDFs ({pdf['pages']} pages, {pdf['passages']} passages): recall@5 "
                 f"hybrid {pdf['recall_at_5_hybrid']:.3f}; the page cited is the answer's "
                 f"for {pdf['page_right']} of {pdf['answers_found']} answers found")
    if r["scan"]:
        s = r["scan"]
        lines.append(f"vector scan of {s['passages']:,} passages ({s['matrix_mb']} MB): "
                     f"first query {s['first_query_ms']} ms (loads the matrix), then "
                     f"{s['cached_query_ms']} ms")
    a = r["answers"]
    if a:
        lines.append(f"answers of {a['model']} judged right: alone {a['alone']}, with the "
                     f"passages found {a['with_documents']} ({a['seconds']:.0f} s)")
        lines += [f"  {kind}: alone {k['alone']}, with the passages {k['with_documents']}"
                  for kind, k in a["by_kind"].items()]
    loads = r["load_average"]
    lines.append("load average (1/5/15 min): " + ", ".join(f"{k} {v}" for k, v in
                                                             loads.items()))
    return lines
