"""Bounds on structured output (a GBNF grammar or a JSON schema), checked before llama.cpp.

llama.cpp trusts a grammar: its parser recurses once per parenthesis (20,000 nested
levels overflowed an 8 MiB stack here, 10,000 did not), copies a repeated item once per
repetition (a 20 KB literal repeated 1,999 times took 850 MiB), and a character no token
can produce (``"\\x00"``, ``[^\\x00-\\U0010FFFF]``) aborts the whole process on the
first sample. llama-cpp-python's JSON schema converter writes one
nested group per allowed item (``maxLength: 30000`` is 30,000 levels) and one copy per
required one (``minItems: 1000000000`` is ~100 GB). A grammar comes from an API client or a
remembered chat setting, so it is checked here, by Hearth's own parser, before llama.cpp
sees it; the server (400), the chat's Structured output box and the worker all call the
same functions. The limits were set from those measurements:

- :data:`MAX_REPEAT` 1,000: llama.cpp itself refuses ``maxLength`` 2,000 ("exceeds sane
  defaults") and takes 1,000 (8 KB of GBNF, nesting 1,000).
- :data:`MAX_NESTING` 1,100: room for the 1,000 levels a ``maxLength`` of 1,000 makes, a
  tenth of the depth that is known to be safe.
- :data:`MAX_ELEMENTS` 500,000 grammar elements after expanding repetitions: 2 million
  took 44 MiB in llama.cpp, so this is about 11 MiB.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_GRAMMAR_CHARS = 256 * 1024  # about half a second of checking on a busy 2-core machine
MAX_SCHEMA_CHARS = 64 * 1024
MAX_REPEAT = 1000
MAX_TOTAL_REPEAT = 20_000  # summed over a schema: the converter writes ~8 chars per unit
MAX_NESTING = 1100
MAX_ELEMENTS = 500_000
MAX_SCHEMA_DEPTH = 64
MAX_SCHEMA_NODES = 5000
MAX_PROPERTIES = 256  # the converter's work on optional properties grows with the square
# What a token can spell: every code point but NUL (llama.cpp's end of a piece) and the
# surrogates (not characters in UTF-8).
_UNIVERSE = ((1, 0xD7FF), (0xE000, 0x10FFFF))
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
_ESCAPES = {"t": 9, "r": 13, "n": 10, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45}
_HEX = {"x": 2, "u": 4, "U": 8}


class StructureError(ValueError):
    """A grammar or JSON schema Hearth will not give llama.cpp; the message says why."""


@dataclass(frozen=True)
class GrammarSize:
    """What a grammar costs llama.cpp: rules, elements after expansion, deepest nesting."""

    rules: int
    elements: int
    nesting: int


def check_structure(grammar: str, json_schema: str) -> None:
    """Raise :class:`StructureError` unless both (either may be empty) are within bounds."""
    if grammar:
        check_grammar(grammar)
    if json_schema:
        check_schema(json_schema)


# ------------------------------------------------------------------------ JSON schema


def check_schema(text: str) -> dict[str, Any]:
    """The schema as a dict, if the grammar it becomes stays within bounds.

    Walks every object in the document (a ``$ref`` may point anywhere in it) without
    recursion, so a deep document is refused rather than overflowing the walk.
    """
    if len(text) > MAX_SCHEMA_CHARS:
        raise StructureError(f"the JSON schema is {len(text):,} characters; Hearth takes at "
                             f"most {MAX_SCHEMA_CHARS:,}")
    try:
        schema = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise StructureError(f"the JSON schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise StructureError("the JSON schema must be a JSON object, like "
                             '{"type": "object"}')
    total, nodes = 0, 0
    todo: list[tuple[Any, str, int]] = [(schema, "", 0)]
    while todo:
        node, where, depth = todo.pop()
        nodes += 1
        if depth > MAX_SCHEMA_DEPTH or nodes > MAX_SCHEMA_NODES:
            raise StructureError(f"the JSON schema is too deep or too large (at most "
                                 f"{MAX_SCHEMA_DEPTH} levels and {MAX_SCHEMA_NODES:,} parts)")
        if isinstance(node, list):
            todo.extend((v, f"{where}/{i}", depth + 1) for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        total += _schema_counts(node, where or "/")
        if total > MAX_TOTAL_REPEAT:
            raise StructureError(f"the JSON schema's lengths and item counts add up to "
                                 f"more than {MAX_TOTAL_REPEAT:,}; Hearth refuses it so "
                                 "the grammar stays small")
        todo.extend((v, f"{where}/{k}", depth + 1) for k, v in node.items())
    return schema


def _schema_counts(node: dict[str, Any], where: str) -> int:
    """The repetition counts one schema object asks for, each within bounds."""
    total = 0
    for key in _COUNTS:
        value = node.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not 0 <= value <= MAX_REPEAT:
                raise StructureError(f"{key} {value} at {where} is outside 0 to "
                                     f"{MAX_REPEAT:,}, the most Hearth allows in a schema")
            total += int(value)
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        total += _pattern_counts(pattern, where)
    properties = node.get("properties")
    if isinstance(properties, dict) and len(properties) > MAX_PROPERTIES:
        raise StructureError(f"{len(properties)} properties at {where}; Hearth allows at "
                             f"most {MAX_PROPERTIES} in one object")
    return total


def _pattern_counts(pattern: str, where: str) -> int:
    """The ``{m,n}`` counts of a regular expression, each within bounds."""
    total = 0
    for braces in re.findall(r"\{([^}]*)\}", pattern):
        for digits in re.findall(r"\d+", braces):
            if len(digits) > 6 or int(digits) > MAX_REPEAT:
                raise StructureError(f"the pattern at {where} repeats {{{braces}}} times; "
                                     f"Hearth allows at most {MAX_REPEAT:,}")
            total += int(digits)
    return total


# ----------------------------------------------------------------------------- GBNF


def check_grammar(text: str) -> GrammarSize:
    """Parse ``text`` as llama.cpp would and refuse what would crash or exhaust it."""
    if len(text) > MAX_GRAMMAR_CHARS:
        raise StructureError(f"the grammar is {len(text):,} characters; Hearth takes at most "
                             f"{MAX_GRAMMAR_CHARS:,}")
    if "\x00" in text:
        raise StructureError("the grammar contains a NUL character")
    return _Gbnf(text).parse()


@dataclass
class _Frame:
    """A rule, or a parenthesised group, being read: the size of its last item (what a
    following ``*``, ``?`` or ``{m,n}`` repeats)."""

    nested: bool
    last: int | None = None

    def item(self, size: int) -> int:
        self.last = size if size else None
        return size

    def repeat(self, low: int, high: int | None) -> int | None:
        """The elements llama.cpp adds to write the repetition out; None when nothing
        precedes it."""
        if self.last is None:
            return None
        size, copies = self.last, max(low, 1)
        optional = 1 if high is None else high - low
        self.last = size * copies + 1
        return size * (copies - 1) + optional * (size + 3)


class _Gbnf:
    """A reader of llama.cpp's GBNF dialect (``llama-grammar.cpp``), without recursion."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.elements = 0
        self.nesting = 0
        self.defined: set[str] = set()
        self.used: dict[str, int] = {}

    def fail(self, why: str, at: int | None = None) -> StructureError:
        at = self.i if at is None else at
        line = self.s.count("\n", 0, at) + 1
        column = at - (self.s.rfind("\n", 0, at) + 1) + 1
        return StructureError(f"grammar line {line}, column {column}: {why}")

    def peek(self, ahead: int = 0) -> str:
        at = self.i + ahead
        return self.s[at] if at < len(self.s) else ""

    def space(self, newline_ok: bool) -> None:
        while (c := self.peek()) and (c in " \t#" or (newline_ok and c in "\r\n")):
            if c == "#":
                while self.peek() and self.peek() not in "\r\n":
                    self.i += 1
            else:
                self.i += 1

    def name(self) -> str:
        start = self.i
        while (c := self.peek()) and (c.isascii() and (c.isalnum() or c == "-")):
            self.i += 1
        if self.i == start:
            raise self.fail("expecting a rule name")
        return self.s[start:self.i]

    def parse(self) -> GrammarSize:
        self.space(True)
        while self.i < len(self.s):
            self.defined.add(self.name())
            self.space(False)
            if not self.s.startswith("::=", self.i):
                raise self.fail("expecting ::=")
            self.i += 3
            self.space(True)
            self.alternates()
            if self.peek() == "\r":
                self.i += 2 if self.peek(1) == "\n" else 1
            elif self.peek() == "\n":
                self.i += 1
            elif self.peek():
                raise self.fail("expecting the end of the line")
            self.space(True)
        missing = sorted(set(self.used) - self.defined)
        if missing:
            raise self.fail(f"rule {missing[0]!r} is used but never defined",
                            self.used[missing[0]])
        if "root" not in self.defined:
            raise StructureError("the grammar needs a 'root ::= ...' rule")
        return GrammarSize(len(self.defined), self.elements, self.nesting)

    def alternates(self) -> None:
        """One rule's right-hand side; groups are frames on a stack, not recursion."""
        frames = [_Frame(nested=False)]
        while True:
            frame, c = frames[-1], self.peek()
            if c == "(":
                if len(frames) > MAX_NESTING:
                    raise self.fail(f"groups are nested more than {MAX_NESTING:,} deep")
                self.i += 1
                self.space(True)
                frames.append(_Frame(nested=True))
                self.nesting = max(self.nesting, len(frames) - 1)
                continue
            if c == ")" and frame.nested:
                self.i += 1
                frames.pop()
                self._add(1 + frames[-1].item(1))  # the group's end, and a reference to it
            elif c == "|":
                self.i += 1
                self.space(True)
                self._add(frame.item(1))
                frame.last = None
                continue
            elif not self.item(frame, c):
                if frame.nested:
                    raise self.fail("expecting ')'")
                self._add(1)
                return
            self.space(frames[-1].nested)

    def item(self, frame: _Frame, c: str) -> bool:
        """Read one item or repetition into ``frame``; False at anything else."""
        if c == '"':
            self._add(frame.item(self.literal()))
        elif c == "[":
            self._add(frame.item(self.char_class()))
        elif c in ("<", "!"):
            raise self.fail("token references (<...>) are not supported by Hearth")
        elif c.isascii() and (c.isalnum() or c == "-"):
            at = self.i
            self.used.setdefault(self.name(), at)
            self._add(frame.item(1))
        elif c == ".":
            self.i += 1
            self._add(frame.item(1))
        elif c in ("*", "+", "?", "{"):
            at = self.i
            added = frame.repeat(*self.repetition(frame.nested))
            if added is None:
                raise self.fail("expecting an item before */+/?/{", at)
            self._add(added)
        else:
            return False
        return True

    def _add(self, elements: int) -> None:
        self.elements += elements
        if self.elements > MAX_ELEMENTS:
            raise self.fail(f"the grammar expands to more than {MAX_ELEMENTS:,} elements; "
                            "use fewer or smaller repetitions")

    def repetition(self, nested: bool) -> tuple[int, int | None]:
        c = self.peek()
        self.i += 1
        if c != "{":
            self.space(nested)
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        self.space(nested)
        low = self.count()
        high: int | None = low
        self.space(nested)
        if self.peek() == ",":
            self.i += 1
            self.space(nested)
            high = self.count() if self.peek().isdigit() else None
            self.space(nested)
        if self.peek() != "}":
            raise self.fail("expecting '}'")
        self.i += 1
        if high is not None and high < low:
            raise self.fail(f"{{{low},{high}}}: the most is less than the least")
        return low, high

    def count(self) -> int:
        start = self.i
        while self.peek().isdigit() and self.peek().isascii():
            self.i += 1
        digits = self.s[start:self.i]
        if not digits:
            raise self.fail("expecting a number")
        if len(digits) > 6 or int(digits) > MAX_REPEAT:
            raise self.fail(f"a repetition of {digits[:12]} times; Hearth allows at most "
                            f"{MAX_REPEAT:,}", start)
        return int(digits)

    def char(self) -> int:
        """One character of a literal or class, escapes decoded (llama.cpp's parse_char)."""
        at, c = self.i, self.peek()
        if not c:
            raise self.fail("unexpected end of the grammar")
        if c != "\\":
            self.i += 1
            return ord(c)
        kind = self.peek(1)
        if kind in _HEX:
            digits = self.s[self.i + 2:self.i + 2 + _HEX[kind]]
            if len(digits) != _HEX[kind] or not all(d in "0123456789abcdefABCDEF"
                                                    for d in digits):
                raise self.fail(f"expecting {_HEX[kind]} hex digits", at)
            self.i += 2 + _HEX[kind]
            return int(digits, 16)
        if kind in _ESCAPES:
            self.i += 2
            return _ESCAPES[kind]
        raise self.fail(f"unknown escape \\{kind}", at)

    def literal(self) -> int:
        self.i += 1
        size = 0
        while self.peek() != '"':
            at = self.i
            value = self.char()
            if not _spellable([(value, value)]):
                raise self.fail(f"the character U+{value:04X} can never be generated", at)
            size += 1
        self.i += 1
        return size

    def char_class(self) -> int:
        """``[...]`` or ``[^...]``; refused when no character can match it."""
        start = self.i
        self.i += 1
        negated = self.peek() == "^"
        self.i += negated
        ranges: list[tuple[int, int]] = []
        while self.peek() != "]":
            low = self.char()
            high = low
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                high = self.char()
            ranges.append((low, high))
        self.i += 1
        if ranges and not (_spellable(_complement(ranges)) if negated else _spellable(ranges)):
            raise self.fail(f"the class {self.s[start:self.i][:40]} matches no character "
                            "a model can write", start)
        return sum(1 if low == high else 2 for low, high in ranges)


def _spellable(ranges: list[tuple[int, int]]) -> bool:
    """Whether any code point in ``ranges`` is one a token can spell."""
    return any(max(low, u_low) <= min(high, u_high)
               for low, high in ranges for u_low, u_high in _UNIVERSE)


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The code points 1..U+10FFFF that none of ``ranges`` holds."""
    out, at = [], 1
    for low, high in sorted((lo, hi) for lo, hi in ranges if lo <= hi):
        if low > at:
            out.append((at, low - 1))
        at = max(at, high + 1)
    if at <= 0x10FFFF:
        out.append((at, 0x10FFFF))
    return out
