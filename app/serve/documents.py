"""Documents over the local server: ``hearth_collections`` on /v1/chat/completions and
``POST /v1/hearth/search``.

A chat request that names collections is answered as the window answers one: its newest
user message is searched and grounded (:mod:`app.docs.citing`: the passages as data in
that turn, within their share of the context), and the response carries the numbered
passages as ``hearth_sources`` beside ``choices``. OpenAI's clients pass such a field
through ``extra_body`` and keep an unknown one in the response, so a plain client still
works. The embedding worker starts on the first request that needs it, not with the
server, and stops with it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from app.docs.citing import Grounding, Retriever
from app.docs.shelf import Shelf
from app.serve.errors import ServeError

FIELD = "hearth_collections"
MAX_K = 50
"""The most passages one search returns: a client asking for thousands gets a 400."""
MAX_QUERY = 4000
"""Characters of a search's query; a question, not a document."""


class ServerDocuments:
    """The home's collections as the server searches them."""

    def __init__(self, shelf: Shelf) -> None:
        self.shelf = shelf
        self.store = shelf.store

    def collections(self, body: dict[str, Any], key: str) -> tuple[str, ...]:
        """The named collections of ``body[key]``, each one that exists; a 400 that says
        which are not."""
        names = body.get(key)
        if not isinstance(names, list) or not names or not all(
                isinstance(n, str) and n for n in names):
            raise ServeError(400, f"'{key}' must be a list of collection names")
        known = self.shelf.known()
        missing = [n for n in names if n not in known]
        if missing:
            raise ServeError(400, f"no document collection named "
                             f"{', '.join(map(repr, missing))} (hearth docs list)")
        return tuple(dict.fromkeys(names))

    def ground(self, body: dict[str, Any], messages: list[dict[str, str]], n_ctx: int,
               max_tokens: int) -> Grounding | None:
        """With ``hearth_collections`` in ``body``, the last user message grounded in
        place; None without it."""
        if body.get(FIELD) is None:
            return None
        names = self.collections(body, FIELD)
        if not messages or messages[-1]["role"] != "user":
            raise ServeError(400, f"'{FIELD}' needs the last message to be the user's")
        retriever = Retriever(self.shelf.search, names)
        grounding = retriever.ground(messages[-1]["content"], n_ctx, max_tokens)
        messages[-1] = {**messages[-1], "content": grounding.content}
        return grounding

    def search(self, body: Any) -> dict[str, Any]:
        """``POST /v1/hearth/search``: ``{query, k, collections}`` -> the passages."""
        if not isinstance(body, dict):
            raise ServeError(400, "the request body must be a JSON object")
        query, k = body.get("query"), body.get("k", 5)
        if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY:
            raise ServeError(400, f"'query' must be text of 1 to {MAX_QUERY} characters")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ServeError(400, f"'k' must be a whole number from 1 to {MAX_K}")
        names = (self.collections(body, "collections")
                 if body.get("collections") is not None else None)
        passages = self.shelf.search(query, k, names)
        return {"object": "list", "data": [
            {**asdict(p), "number": n} for n, p in enumerate(passages, start=1)]}

    def close(self) -> None:
        self.shelf.close()


def sources_json(grounding: Grounding) -> list[dict[str, Any]]:
    return [{**s.to_json(), "where": s.where} for s in grounding.sources]
