"""One JSON codec for a run's records (run.json, state.json, summary.json, Finished).

Writing is :func:`dataclasses.asdict`. Reading is tolerant on purpose: run folders
outlive the Hearth that wrote them, so a field an older version did not write takes
its default, a field a newer version added is ignored, and nested records (the base
model, the settings, the fidelity check) are rebuilt by their annotated type. Only a
value that is not a JSON object where a record belongs, or a missing field that has no
default, is refused, with :class:`RecordError`.

The worker protocol's own codec (:mod:`app.workers.wire`) is for flat messages tagged
with a ``kind``; these records nest and have no kind, hence this second, small one.
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import MISSING, asdict, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class RecordError(ValueError):
    """A run file that cannot be read as the record it should hold."""


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
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name])
        elif f.default is MISSING and f.default_factory is MISSING:
            raise RecordError(f"{cls.__name__}: {f.name!r} is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{cls.__name__}: {exc}") from exc


def _coerce(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        if isinstance(option, type) and is_dataclass(option) and isinstance(value, dict):
            return from_dict(option, value)
        if isinstance(option, type) and issubclass(option, enum.Enum):
            try:
                return option(value)
            except ValueError:
                continue
    return value


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
