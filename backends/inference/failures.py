"""How the inference worker answers a command that failed in a way nobody foresaw.

A request carries values from API clients, settings files and chat templates written by
strangers; one that trips an exception the worker does not name must end that request
with an ``Error``, never the process (in the app the worker is the person's chat too,
and every reply in flight would be lost with it).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import llama_cpp

from app.inference import protocol as p

log = logging.getLogger("hearth.worker")


def unexpected(command: Any, exc: Exception, llm: llama_cpp.Llama | None) -> p.Error:
    """The ``Error`` that ends ``command`` after ``exc``; the traceback goes to the log.

    A reply may have stopped half-way through an evaluation, so the KV cache is
    forgotten: the next reply evaluates its prompt afresh rather than trust it.
    """
    log.error("%s failed", type(command).__name__, exc_info=exc)
    request_id = getattr(command, "request_id", None)
    if llm is not None and isinstance(command, p.Chat):
        llm.reset()
    kind = "load_failed" if isinstance(command, p.Load) else "internal"
    what = str(exc)[:300] or "no details"
    return p.Error(kind, f"the model worker could not do this ({type(exc).__name__}: "
                         f"{what}); it goes on with the next request", request_id)


def request_id_of(data: bytes) -> str | None:
    """The ``request_id`` of a message that did not decode, so its Error reaches the one
    waiting for that reply instead of nobody."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None
    found = raw.get("request_id") if isinstance(raw, dict) else None
    return found if isinstance(found, str) else None
