"""``hearth bench docs --answers``: does the chat model answer the benchmark's questions
right, from its own weights and from the passages the search finds?

Each of the project's questions (``resources/docs_bench/questions.json``) is asked of the
model twice through the real worker, greedy: alone, and grounded as a conversation that
uses the collection is (:func:`app.docs.citing.ground`). An answer is right when it says
the question's answer phrase (:func:`app.docs.answering.is_right`). The documents are
made up, so the first figure is the floor (what a model guesses) and the second what
retrieval adds. Per kind: a "lookup" question names a code or number, a "paraphrase"
asks in other words than the passage.
"""

from __future__ import annotations

import time
from typing import Any

from app.docs.answering import ask_all, score
from app.docs.citing import Retriever
from app.docs.search import DocumentSearch
from app.docs.store import Question
from app.inference.client import InferenceClient
from app.models.library import ModelRecord
from app.workspace import Workspace

N_CTX = 4096


def answer_part(ws: Workspace, record: ModelRecord, search: DocumentSearch,
                questions: list[dict[str, str]]) -> dict[str, Any]:
    asked = [Question(q["q"], q["answer"], q["doc"]) for q in questions]
    retriever = Retriever(search.search, ("bench",))
    client = InferenceClient(log_file=ws.home.logs / "bench-docs-worker.log", home=ws.home)
    started = time.perf_counter()
    try:
        client.start()
        client.load_blocking(str(record.path), n_ctx=N_CTX,
                             template=ws.settings.template_for(record.name))
        # Alternating per question would reload nothing either way; one way, then the other.
        alone = ask_all(client, asked, None, N_CTX)
        grounded = ask_all(client, asked, retriever, N_CTX)
    finally:
        client.close()
    by_kind: dict[str, dict[str, str]] = {}
    for kind in sorted({q["kind"] for q in questions}):
        picked = [i for i, q in enumerate(questions) if q["kind"] == kind]
        by_kind[kind] = {"alone": score([alone[i] for i in picked]),
                         "with_documents": score([grounded[i] for i in picked])}
    return {"model": record.name, "alone": score(alone), "with_documents": score(grounded),
            "by_kind": by_kind, "seconds": round(time.perf_counter() - started, 1),
            "examples": [{"question": q.question, "expected": q.answer,
                          "alone": a.text[:200], "with_documents": g.text[:200],
                          "right": [a.right, g.right]}
                         for q, a, g in list(zip(asked, alone, grounded, strict=True))[:8]]}
