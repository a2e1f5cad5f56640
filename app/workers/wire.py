"""Typed messages as JSON: the one codec behind both worker protocols.

The inference protocol (:mod:`app.inference.protocol`) and the training protocol
(:mod:`app.finetune.protocol`) each define their messages as dataclasses with a ``kind``
class attribute; this module turns them into JSON and back. JSON rather than pickle, so
that a confused or hostile peer can at worst send a malformed dict, which
:func:`from_json` refuses with the protocol's own error type.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any


class WireError(ValueError):
    """A message that is not valid JSON or not one of the protocol's."""


def to_json(message: Any) -> str:
    payload = asdict(message)
    payload["kind"] = message.kind
    return json.dumps(payload, ensure_ascii=False)


def from_json(text: str, by_kind: dict[str, type],
              nested: dict[tuple[type, str], type] | None = None,
              error: type[WireError] = WireError) -> Any:
    """Build the message ``text`` describes; unknown fields are ignored (newer peers)."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"not a JSON message: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("kind") not in by_kind:
        raise error(f"unknown message kind: {text[:80]!r}")
    kind = payload.pop("kind")
    cls = by_kind[kind]
    known = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in payload.items() if k in known}
    try:
        for (owner, name), inner in (nested or {}).items():
            if owner is cls and isinstance(kwargs.get(name), dict):
                kwargs[name] = inner(**kwargs[name])
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise error(f"bad {kind} message: {exc}") from exc
