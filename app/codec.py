"""One JSON codec for Hearth's records: what crosses a file or a process boundary.

A run's files (run.json, state.json, summary.json, the ``Finished`` event), Teach's
records, settings.json, the library's provenance, and a one-shot child's answer
(:mod:`app.workers.answer`) are dataclasses, written and read here.

Writing is :func:`dataclasses.asdict`. Reading is tolerant on purpose: the files
outlive the Hearth that wrote them, so a field an older version did not write takes
its default, a field a newer version added is ignored, and nested records (the base
model, the settings, the fidelity check, the list of Teach's cases) are rebuilt by their
annotated type. Every other value is checked against its field's type: a value of
another type (a string where a number belongs, null where no None is allowed), or a
missing field that has no default, is refused, with :class:`RecordError`.

The worker protocol's own codec (:mod:`app.workers.wire`) is for flat messages tagged
with a ``kind``; these records nest and have no kind, hence this second, small one.
"""

from __future__ import annotations

import contextlib
import enum
import json
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class RecordError(ValueError):
    """A run file that cannot be read as the record it should hold."""


E = TypeVar("E")


def dump_entries(entries: Iterable[Any]) -> str:
    """A message's list of entries (its tool steps, its sources) as one JSON column."""
    return json.dumps([e.to_json() for e in entries], ensure_ascii=False)


def load_entries(text: str | None, read: Callable[[Any], E | None]) -> list[E]:
    """The entries back; one that ``read`` cannot read (a damaged or foreign file's) is
    left out, and the rest still load."""
    try:
        raw = json.loads(text or "[]")
    except ValueError:
        raw = []
    found = [read(item) for item in raw] if isinstance(raw, list) else []
    return [e for e in found if e is not None]


def to_dict(record: Any) -> dict[str, Any]:
    """The record as plain JSON values (enums stay ``str`` subclasses, which JSON writes)."""
    return asdict(record)


def from_dict(cls: type[T], data: Any) -> T:
    """Build ``cls`` from ``data``: unknown keys ignored, missing ones defaulted."""
    if not isinstance(data, dict):
        raise RecordError(f"{cls.__name__}: expected a JSON object, got "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]  # T is bound to dataclasses by use
        if f.name in data:
            try:
                kwargs[f.name] = _coerce(hints[f.name], data[f.name])
            except _Mismatch as exc:
                raise RecordError(f"{cls.__name__}.{f.name}: {exc}") from None
        elif f.default is MISSING and f.default_factory is MISSING:
            raise RecordError(f"{cls.__name__}: {f.name!r} is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{cls.__name__}: {exc}") from exc


class _Mismatch(Exception):
    """A JSON value that is not of the field's annotated type."""


def _coerce(hint: Any, value: Any) -> Any:
    """``value`` as ``hint`` says: records rebuilt, enums looked up, and every other
    value checked against its type (an ``int`` passes for a ``float``, as in JSON)."""
    if hint is Any or hint is object:
        return value
    if _is_union(hint):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                try:
                    return _coerce(option, value)
                except _Mismatch:
                    continue
        raise _Mismatch(f"expected {_name(hint)}, got {_json_name(value)}")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list and isinstance(value, list):
        return [_coerce(args[0] if args else Any, v) for v in value]
    if origin is dict and isinstance(value, dict):
        inner = args[1] if args else Any
        return {str(k): _coerce(inner, v) for k, v in value.items()}
    if isinstance(hint, type):
        if is_dataclass(hint) and isinstance(value, dict):
            return from_dict(hint, value)
        if issubclass(hint, enum.Enum):
            # A value a newer Hearth wrote stays as it is: the record decides
            # (RunStatus reads an unknown status as "created").
            with contextlib.suppress(ValueError):
                return hint(value)
            return value
        if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if hint is int and isinstance(value, bool):
            raise _Mismatch(f"expected int, got {_json_name(value)}")
        if not is_dataclass(hint) and isinstance(value, hint):
            return value
    raise _Mismatch(f"expected {_name(hint)}, got {_json_name(value)}")


def _name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _json_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            type(None): "null"}.get(type(value), type(value).__name__)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
