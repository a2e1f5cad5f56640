"""hearth bench tools' scoring (app.bench.tools): what counts as the right call, so the
table in BENCHMARKS.md means what it says."""

from __future__ import annotations

from app.bench.tools import CaseResult, cases, matches, right_calls, summarize
from app.chat.tools import ToolCall


def test_the_set_has_every_kind_and_enough_cases() -> None:
    tools, all_cases = cases()
    kinds = [c["kind"] for c in all_cases]
    assert len(all_cases) >= 30 and set(kinds) == {"simple", "multiple", "parallel",
                                                   "irrelevance"}
    assert all(name in tools for c in all_cases for name in c["tools"])


def test_arguments_match_by_value_not_by_accident() -> None:
    assert matches("Asia/Tokyo", ["Tokyo"]) and matches(17.0, [17])
    assert not matches("example.com", ["bob@example.com"])  # a part of the address
    assert not matches("español antiguo x", ["es"]) and matches("ES", ["es"])
    assert not matches(True, [1]) and not matches("", ["Paris"])


def test_calls_must_be_all_and_only_those_expected() -> None:
    want = [{"name": "add", "arguments": {"a": [2], "b": [3]}},
            {"name": "add", "arguments": {"a": [10], "b": [20]}}]
    two = [ToolCall("1", "add", '{"a": 10, "b": 20}'), ToolCall("2", "add", '{"a": 2, "b": 3}')]
    assert right_calls(two, want)  # in any order
    assert not right_calls(two[:1], want) and not right_calls([*two, two[0]], want)
    assert right_calls([], []) and not right_calls(two[:1], [])
    table = summarize("m", [CaseResult("simple", "q", "auto", True),
                            CaseResult("simple", "q", "required", False)], 1.0)["table"]
    assert table == {"simple": {"auto": "1/1", "required": "0/1"}}
