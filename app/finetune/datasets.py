"""Reading fine-tuning datasets: detect the format, check every record, split.

Datasets come from strangers and from hand-edited files, so nothing is trained on until
every record has been read and checked. Problems are reported the way a person can fix
them: "Line 14 of data.jsonl: 'messages' is missing". This module needs only ``json``
(no tokenizer, no torch) so the app, the CLI and a future GUI can validate a file
instantly; exact token counts come later from the training worker, and the numbers
here are labelled as approximations.

Accepted formats (detected from the first record):

- OpenAI chat JSONL: ``{"messages": [{"role": ..., "content": ...}, ...]}``
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

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "model": "assistant",
                  "bot": "assistant", "system": "system"}
FORMATS = ("openai", "sharegpt", "alpaca", "text")
MAX_SHOWN_ISSUES = 20
# A rough characters-per-token ratio for English BPE vocabularies; only used for the
# "about N tokens" figure shown before the worker has counted exactly.
CHARS_PER_TOKEN = 4.0
# Limits on what a stranger's file can make us hold in memory. Far beyond any real
# fine-tuning set for a local model (a record is cut to max_seq_len tokens anyway), far
# below what would freeze the app.
MAX_FILE_BYTES = 1 << 30
MAX_RECORDS = 1_000_000
MAX_MESSAGE_CHARS = 1_000_000
MAX_NESTING = 200  # where a too-deep file is reported (records are 3 levels deep)


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
class Example:
    """One training record, normalised: a chat (``messages``) or raw ``text``."""

    line: int
    """Line of the source file where the record starts (1-based), for messages."""
    messages: list[dict[str, str]] | None = None
    text: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.messages is not None:
            return {"messages": self.messages, "line": self.line}
        return {"text": self.text, "line": self.line}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Example:
        return cls(line=int(data.get("line", 0)), messages=data.get("messages"),
                   text=data.get("text"))

    @property
    def n_chars(self) -> int:
        if self.messages is not None:
            return sum(len(m["content"]) for m in self.messages)
        return len(self.text or "")

    def key(self) -> str:
        """Identity for duplicate detection (the content, not the line)."""
        payload = self.messages if self.messages is not None else self.text
        return json.dumps(payload, sort_keys=True, ensure_ascii=False)


@dataclass
class DatasetStats:
    records: int
    duplicates_dropped: int
    approx_tokens: int
    """Characters / 4: a labelled estimate; the worker reports the exact count."""
    longest_record_chars: int
    longest_record_line: int

    def describe(self) -> str:
        return (f"{self.records} records ({self.duplicates_dropped} duplicates dropped), "
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
        raise ValueError("the validation fraction must be between 0 and 1")
    if len(examples) < 2:
        raise ValueError("a dataset needs at least 2 records: one is held out to measure "
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
    sha = hashlib.sha256(raw).hexdigest()
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; choose one of {FORMATS}")

    issues: list[str] = []
    records: list[tuple[int, Any]]
    stripped = text.lstrip()
    if path.suffix.lower() in (".txt", ".md") or format == "text" and not (
            stripped.startswith("{") or stripped.startswith("[")):
        examples = []
        for example in _plain_text(text):
            try:
                examples.append(_check_size(example))
            except _Bad as exc:
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
        fmt = format or _detect(records)
        if fmt is None:
            if not issues:
                issues.append(f"{name}: no records found")
            raise DatasetError(path, issues)
        examples = []
        parse = _PARSERS[fmt]
        for line, obj in records:
            where = f"Line {line} of {name}"
            try:
                examples.append(_check_size(parse(obj, line)))
            except _Bad as exc:
                issues.append(f"{where}: {exc}")
    if issues:
        raise DatasetError(path, issues, usable=len(examples))
    if not examples:
        raise DatasetError(path, [f"{name} has no usable records"])

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


class _Bad(ValueError):
    """One record's problem, phrased for a person (the caller adds the line)."""


def _jsonl(text: str, name: str, issues: list[str]) -> list[tuple[int, Any]]:
    records = []
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


def _check_size(example: Example) -> Example:
    texts = ([m["content"] for m in example.messages] if example.messages is not None
             else [example.text or ""])
    for i, text in enumerate(texts, start=1):
        if len(text) > MAX_MESSAGE_CHARS:
            what = f"message {i}" if example.messages is not None else "the text"
            raise _Bad(f"{what} is {len(text):,} characters long; the limit is "
                       f"{MAX_MESSAGE_CHARS:,}")
    return example


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


def _detect(records: list[tuple[int, Any]]) -> str | None:
    for _, obj in records:
        if not isinstance(obj, dict):
            continue
        if "messages" in obj:
            return "openai"
        if "conversations" in obj:
            return "sharegpt"
        if "instruction" in obj or "output" in obj:
            return "alpaca"
        if "text" in obj:
            return "text"
        return "openai"  # the most common; its parser names what is missing
    return None


def _need_dict(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Bad(f"expected a JSON object, found {type(obj).__name__}")
    return obj


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{what} must be text, found {type(value).__name__}")
    return value


def _check_chat(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    if not any(m["role"] == "assistant" for m in messages):
        raise _Bad("no assistant message: there is nothing to learn from this record")
    for i, m in enumerate(messages, start=1):
        if m["role"] == "system" and i != 1:
            raise _Bad(f"message {i} is a system message; only the first may be")
    return messages


def _openai(obj: Any, line: int) -> Example:
    obj = _need_dict(obj)
    if "messages" not in obj:
        raise _Bad("'messages' is missing")
    raw = obj["messages"]
    if not isinstance(raw, list) or not raw:
        raise _Bad("'messages' must be a non-empty list")
    messages = []
    for i, m in enumerate(raw, start=1):
        if not isinstance(m, dict):
            raise _Bad(f"message {i} is not an object")
        if "role" not in m:
            raise _Bad(f"message {i} has no 'role'")
        if "content" not in m:
            raise _Bad(f"message {i} has no 'content'")
        role = m["role"]
        if role not in ROLES:
            raise _Bad(f"message {i} has role {role!r}; use system, user or assistant")
        content = _string(m["content"], f"the content of message {i}")
        if not content.strip() and role == "assistant":
            raise _Bad(f"message {i} (assistant) is empty")
        messages.append({"role": role, "content": content})
    return Example(line=line, messages=_check_chat(messages))


def _sharegpt(obj: Any, line: int) -> Example:
    obj = _need_dict(obj)
    if "conversations" not in obj:
        raise _Bad("'conversations' is missing")
    raw = obj["conversations"]
    if not isinstance(raw, list) or not raw:
        raise _Bad("'conversations' must be a non-empty list")
    messages = []
    for i, m in enumerate(raw, start=1):
        if not isinstance(m, dict):
            raise _Bad(f"turn {i} is not an object")
        if "from" not in m:
            raise _Bad(f"turn {i} has no 'from'")
        if "value" not in m:
            raise _Bad(f"turn {i} has no 'value'")
        who = str(m["from"]).lower()
        if who not in SHAREGPT_ROLES:
            raise _Bad(f"turn {i} is from {m['from']!r}; use human, gpt or system")
        content = _string(m["value"], f"the value of turn {i}")
        messages.append({"role": SHAREGPT_ROLES[who], "content": content})
    return Example(line=line, messages=_check_chat(messages))


def _alpaca(obj: Any, line: int) -> Example:
    obj = _need_dict(obj)
    for key in ("instruction", "output"):
        if key not in obj:
            raise _Bad(f"'{key}' is missing")
    instruction = _string(obj["instruction"], "'instruction'")
    extra = _string(obj.get("input") or "", "'input'")
    output = _string(obj["output"], "'output'")
    if not instruction.strip():
        raise _Bad("'instruction' is empty")
    if not output.strip():
        raise _Bad("'output' is empty")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = []
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        messages.append({"role": "system", "content": obj["system"]})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return Example(line=line, messages=messages)


def _text_record(obj: Any, line: int) -> Example:
    obj = _need_dict(obj)
    if "text" not in obj:
        raise _Bad("'text' is missing")
    text = _string(obj["text"], "'text'")
    if not text.strip():
        raise _Bad("'text' is empty")
    return Example(line=line, text=text)


_PARSERS = {"openai": _openai, "sharegpt": _sharegpt, "alpaca": _alpaca,
            "text": _text_record}


def _plain_text(text: str) -> list[Example]:
    """Paragraphs (separated by blank lines) of a plain text file, with their lines."""
    examples, current, start = [], [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            examples.append(Example(line=start, text="\n".join(current)))
            current = []
    if current:
        examples.append(Example(line=start, text="\n".join(current)))
    return examples
