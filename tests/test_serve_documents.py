"""Documents over the server: ``hearth_collections`` through the OpenAI client's
``extra_body`` grounds the question and returns ``hearth_sources``; ``/v1/hearth/search``
returns passages; a collection that does not exist is a 400 naming it."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from app.docs.embedder import Embedder
from app.docs.indexer import DocumentIndexer
from app.docs.shelf import Shelf
from app.docs.store import DocumentStore
from app.serve.documents import ServerDocuments
from tests.docs_files import make_pdf
from tests.serve_tiny import TINY, tiny_server


def test_collections_ground_a_chat_and_search_answers(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kettle.pdf").write_bytes(make_pdf(
        [["Unpacking: remove the foam."], ["Descale the kettle monthly with citric acid."]]))
    with Embedder() as embedder, tiny_server(tmp_path, lambda ws: ServerDocuments(Shelf(
            DocumentStore(ws.library.conn), lambda: embedder))) as served:
        documents = served.server.documents
        assert documents is not None
        DocumentIndexer(documents.store, embedder.embed).add([docs], "kitchen")
        question = [{"role": "user", "content": "How do I descale the kettle?"}]
        plain = served.api.chat.completions.create(model=TINY, messages=question,
                                                   max_tokens=2, temperature=0)
        cited = served.api.chat.completions.create(
            model=TINY, messages=question, max_tokens=2, temperature=0,
            extra_body={"hearth_collections": ["kitchen"]})
        sources = cited.model_extra["hearth_sources"] if cited.model_extra else None
        assert sources and sources[0]["number"] == 1
        assert sources[0]["where"] == "kettle.pdf, page 2"
        assert "citric acid" in sources[0]["text"]
        assert plain.model_extra is None or "hearth_sources" not in plain.model_extra
        # The passages went into the prompt.
        assert cited.usage and plain.usage
        assert cited.usage.prompt_tokens > plain.usage.prompt_tokens + 20
        stream = served.api.chat.completions.create(
            model=TINY, messages=question, max_tokens=2, temperature=0, stream=True,
            extra_body={"hearth_collections": ["kitchen"]})
        chunks = list(stream)
        first = chunks[0].model_extra or {}
        assert first["hearth_sources"][0]["where"] == "kettle.pdf, page 2"
        assert all("hearth_sources" not in (c.model_extra or {}) for c in chunks[1:])
        with pytest.raises(openai.BadRequestError, match="'cellar'"):
            served.api.chat.completions.create(
                model=TINY, messages=question, max_tokens=2,
                extra_body={"hearth_collections": ["cellar"]})
        found = served.api.post("/hearth/search", cast_to=object, body={
            "query": "citric acid", "k": 2, "collections": ["kitchen"]})
        assert isinstance(found, dict) and found["data"][0]["page"] == 2
        with pytest.raises(openai.BadRequestError, match="'k'"):
            served.api.post("/hearth/search", cast_to=object, body={"query": "x", "k": 0})
