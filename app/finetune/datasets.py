"""Reading fine-tuning datasets: detect the format, check every record, split.

Datasets come from strangers and from hand-edited files, so nothing is trained on until
every record has been read and checked. Problems are reported the way a person can fix
them: "Line 14 of data.jsonl: 'messages' is missing". This module needs only ``json``
(no tokenizer, no torch) so the app, the CLI and a future GUI can validate a file
instantly; exact token counts come later from the training worker, and the numbers
here are labelled as approximations.

Accepted formats (detected from the first record):

- OpenAI chat JSONL: ``{"messages": [{"role": ..., "content": ...}, ...]}``, with
  ``"tools"`` and assistant ``tool_calls`` / ``tool`` turns where a chat called tools
  (rendered as the chat renders them, :mod:`app.chat.tool_prompt`)
- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|..., "value": ...}]}``
- Alpaca: ``{"instruction", "input"?, "output"}``, as JSONL or one JSON list
- Plain text: a ``.txt``/``.md`` file, one record per blank-line-separated paragraph
  (or JSONL of ``{"text": ...}``); the loss then covers the whole text.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ExitCode, HearthError
from app.finetune.dataset_records import (
    PARSERS,
    Example,
    RecordProblem,
    check_size,
    detect_format,
    plain_text_examples,
)
from app.units import count

FORMATS = ("openai", "sharegpt", "alpaca", "text")
MAX_SHOWN_ISSUES = 20
# A rough characters-per-token ratio for English BPE vocabularies: the "about N tokens"
# figure and the plan's token counts (app.finetune.plan, on the rendered text) before
# the worker has counted exactly.
CHARS_PER_TOKEN = 4.0
# Limits on what a stranger's file can make us hold in memory. Far beyond any real
# fine-tuning set for a local model (a record is cut to max_seq_len tokens anyway), far
# below what would freeze the app.
MAX_FILE_BYTES = 1 << 30
MAX_RECORDS = 1_000_000
MAX_NESTING = 200  # where a too-deep file is reported (records are 3 levels deep)


class SplitError(HearthError, ValueError):
    """The records cannot be split into training and validation records as asked."""

    exit_code = ExitCode.BAD_INPUT


class DatasetError(HearthError, ValueError):
    """The dataset cannot be trained on; ``issues`` lists every problem found."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, path: Path, issues: list[str], usable: int = 0) -> None:
        self.path = path
        self.issues = issues
        self.usable = usable
        shown = issues[:MAX_SHOWN_ISSUES]
        more = len(issues) - len(shown)
        lines = [f"{path.name} cannot be used for training "
                 f"({len(issues)} problem{'s' if len(issues) != 1 else ''}, "
                 f"{usable} usable record{'s' if usable != 1 else ''}):", *shown]
        if more:
            lines.append(f"... and {more} more")
        lines.append("Fix these lines (or remove them) and try again.")
        super().__init__("\n".join(lines))


@dataclass
class DatasetStats:
    records: int
    duplicates_dropped: int
    approx_tokens: int
    """Characters / 4: a labelled estimate; the worker reports the exact count."""
    longest_record_chars: int
    longest_record_line: int

    def describe(self) -> str:
        return (f"{count(self.records, 'record')} ({count(self.duplicates_dropped, 'duplicate')}"
                " dropped), "
                f"about {self.approx_tokens:,} tokens (estimated from characters), "
                f"longest record: {self.longest_record_chars:,} characters "
                f"(line {self.longest_record_line})")


@dataclass
class Dataset:
    path: Path
    format: str
    sha256: str
    examples: list[Example] = field(repr=False)
    stats: DatasetStats

    def split(self, validation_fraction: float = 0.1, seed: int = 0
              ) -> tuple[list[Example], list[Example]]:
        """A seeded shuffle, then ``validation_fraction`` (at least one record) held out."""
        return split_examples(self.examples, validation_fraction, seed)


def split_examples(examples: list[Example], validation_fraction: float = 0.1,
                   seed: int = 0) -> tuple[list[Example], list[Example]]:
    if not 0 < validation_fraction < 1:
        raise SplitError("the validation fraction must be between 0 and 1")
    if len(examples) < 2:
        raise SplitError("a dataset needs at least 2 records: one is held out to measure "
                         "validation loss")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * validation_fraction))
    n_val = min(n_val, len(examples) - 1)
    val = [examples[i] for i in sorted(order[:n_val])]
    train = [examples[i] for i in sorted(order[n_val:])]
    return train, val


# ------------------------------------------------------------------------- loading


def load_dataset(path: str | Path, format: str | None = None) -> Dataset:
    """Read, detect, check and de-duplicate ``path``; raise :class:`DatasetError`."""
    path = Path(path)
    raw, text = _read_text(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; choose one of {FORMATS}")
    fmt, examples = _examples(path, text, format)
    return _deduplicated(path, fmt, hashlib.sha256(raw).hexdigest(), examples)


def _read_text(path: Path) -> tuple[bytes, str]:
    """The file's bytes and its text, or :class:`DatasetError` saying what is wrong."""
    name = path.name
    try:
        if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
            raise DatasetError(path, [f"{name} is {path.stat().st_size:,} bytes; the limit "
                                      f"is {MAX_FILE_BYTES:,}: split it into smaller files"])
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DatasetError(path, [f"{path} does not exist"]) from exc
    except IsADirectoryError as exc:
        raise DatasetError(path, [f"{path} is a folder; choose a .jsonl, .json or .txt "
                                  "file"]) from exc
    except OSError as exc:
        raise DatasetError(path, [f"{path} cannot be read: {exc.strerror}"]) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise DatasetError(path, [f"{name} is {len(raw):,} bytes; the limit is "
                                  f"{MAX_FILE_BYTES:,}: split it into smaller files"])
    if not raw.strip():
        raise DatasetError(path, [f"{name} is empty: add one record per line"])
    if b"\x00" in raw[:8192]:
        raise DatasetError(path, [f"{name} is a binary file, not text; a dataset is a "
                                  ".jsonl, .json or .txt file"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DatasetError(path, [f"Line {line} of {name}: not valid UTF-8 text (byte "
                                  f"{exc.start}); save the file as UTF-8"]) from exc
    return raw, text


def _examples(path: Path, text: str, format: str | None) -> tuple[str, list[Example]]:
    """Every record checked; :class:`DatasetError` lists each one that is not usable."""
    name = path.name
    issues: list[str] = []
    records: list[tuple[int, Any]]
    fmt: str | None
    stripped = text.lstrip()
    if path.suffix.lower() in (".txt", ".md") or format == "text" and not (
            stripped.startswith("{") or stripped.startswith("[")):
        examples = []
        for example in plain_text_examples(text):
            try:
                examples.append(check_size(example))
            except RecordProblem as exc:
                issues.append(f"Line {example.line} of {name}: {exc}")
        if len(examples) > MAX_RECORDS:
            issues.append(f"Line {examples[MAX_RECORDS].line} of {name}: more than "
                          f"{MAX_RECORDS:,} records; split the file")
        fmt = "text"
    else:
        if stripped.startswith("["):
            records = _json_list(text, name, issues)
        else:
            records = _jsonl(text, name, issues)
        fmt = format or detect_format(records)
        if fmt is None:
            if not issues:
                issues.append(f"{name}: no records found")
            raise DatasetError(path, issues)
        examples = []
        parse = PARSERS[fmt]
        for line, obj in records:
            where = f"Line {line} of {name}"
            try:
                examples.append(check_size(parse(obj, line)))
            except RecordProblem as exc:
                issues.append(f"{where}: {exc}")
    if issues:
        raise DatasetError(path, issues, usable=len(examples))
    if not examples:
        raise DatasetError(path, [f"{name} has no usable records"])
    return fmt, examples


def _deduplicated(path: Path, fmt: str, sha: str, examples: list[Example]) -> Dataset:
    seen: set[str] = set()
    unique: list[Example] = []
    for example in examples:
        key = example.key()
        if key not in seen:
            seen.add(key)
            unique.append(example)
    longest = max(unique, key=lambda e: e.n_chars)
    total_chars = sum(e.n_chars for e in unique)
    stats = DatasetStats(records=len(unique), duplicates_dropped=len(examples) - len(unique),
                         approx_tokens=int(total_chars / CHARS_PER_TOKEN),
                         longest_record_chars=longest.n_chars,
                         longest_record_line=longest.line)
    return Dataset(path=path, format=fmt, sha256=sha, examples=unique, stats=stats)


def _jsonl(text: str, name: str, issues: list[str]) -> list[tuple[int, Any]]:
    records: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(records) >= MAX_RECORDS:
            issues.append(f"Line {number} of {name}: more than {MAX_RECORDS:,} records; "
                          "split the file")
            break
        try:
            records.append((number, _loads(line)))
        except json.JSONDecodeError as exc:
            issues.append(f"Line {number} of {name}: not valid JSON ({exc.msg} at column "
                          f"{exc.colno})")
        except _TooDeep:
            issues.append(f"Line {number} of {name}: nested too deeply to be a record "
                          "(a record is an object holding a list of messages)")
    return records


class _TooDeep(ValueError):
    pass


def _loads(text: str) -> Any:
    """``json.loads`` whose RecursionError on deep nesting becomes a record's problem."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise _TooDeep from exc


def _brackets(text: str) -> Iterator[tuple[int, str]]:
    """(line, bracket) for each bracket of a JSON text that is not inside a string."""
    line, in_str, escape = 1, False, False
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{]}":
            yield line, ch


def _too_deep_line(text: str) -> int | None:
    """The line where brackets first nest deeper than ``MAX_NESTING``, else None."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return None
    depth = 0
    for line, ch in _brackets(text):
        depth += 1 if ch in "[{" else -1
        if depth > MAX_NESTING:
            return line
    return None


def _json_list(text: str, name: str, issues: list[str]) -> list[tuple[int, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        issues.append(f"Line {exc.lineno} of {name}: not valid JSON ({exc.msg} at column "
                      f"{exc.colno})")
        return []
    except RecursionError:
        deep = _too_deep_line(text) or 1
        issues.append(f"Line {deep} of {name}: nested too deeply to be a record "
                      "(a record is an object holding a list of messages)")
        return []
    if not isinstance(data, list):
        issues.append(f"Line 1 of {name}: expected a list of records")
        return []
    # Line numbers of a pretty-printed list are not kept by json; find each item's
    # opening brace instead so the messages still point somewhere useful.
    starts = _object_lines(text)
    if len(data) > MAX_RECORDS:
        line = starts[MAX_RECORDS] if len(starts) > MAX_RECORDS else 1
        issues.append(f"Line {line} of {name}: more than {MAX_RECORDS:,} records; split "
                      "the file")
        return []
    return [(starts[i] if i < len(starts) else 1, obj) for i, obj in enumerate(data)]


def _object_lines(text: str) -> list[int]:
    """Line numbers where each top-level item of a JSON list starts."""
    lines, depth = [], 0
    for line, ch in _brackets(text):
        if ch in "[{":
            if depth == 1:
                lines.append(line)
            depth += 1
        else:
            depth -= 1
    return lines
