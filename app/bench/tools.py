"""``hearth bench tools``: how often a model calls the right tool with the right arguments.

A small set in the style of the Berkeley Function-Calling Leaderboard
(``resources/tools/bench_cases.json``): *simple* (one tool offered), *multiple* (four
offered, one fits), *parallel* (two calls in one reply), *irrelevance* (tools offered, the
question needs none: right is no call). Every case goes through the real worker and the
model's own template (or Hearth's fallback prompt), greedy, as the server would ask.

Two ways of asking, side by side:

- ``auto``: the model decides whether to call (``tool_choice: "auto"``), and a call it
  begins is held to the tools' schemas from there, as the server and the chat hold it
  (:func:`app.chat.tools.auto_call_schema`); a call must be readable
  (:func:`app.chat.tools.read_calls`), name the right tool and carry the right
  arguments;
- ``required``: the reply is held to a call by grammar (``tool_choice: "required"``,
  parallel calls allowed for the parallel cases); this measures choosing the tool and
  filling its arguments when the format cannot fail. Irrelevance is not asked this way.

An argument is right when every expected key has one of its listed values: a string when
it contains the listed one, case aside ("Asia/Tokyo" for "Tokyo"; a listed value of three
letters or fewer, such as "es", must be the whole string), a number by value.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import Any

from app.chat.tools import (
    Tool,
    ToolCall,
    ToolChoice,
    auto_call_schema,
    call_schema,
    read_calls,
    tool_from,
    tools_json,
)
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.library import ModelRecord
from app.workspace import Workspace

MAX_TOKENS = 160
KINDS = ("simple", "multiple", "parallel", "irrelevance")


@dataclass
class CaseResult:
    kind: str
    ask: str
    mode: str
    right: bool
    called: list[str] = field(default_factory=list)
    text: str = ""


def cases() -> tuple[dict[str, Tool], list[dict[str, Any]]]:
    raw = json.loads(resources.files("resources").joinpath("tools/bench_cases.json")
                     .read_text("utf-8"))
    tools = {name: tool_from({"name": name, **spec}) for name, spec in raw["tools"].items()}
    return tools, raw["cases"]


def matches(value: Any, allowed: list[Any]) -> bool:
    for option in allowed:
        if isinstance(option, int | float) and not isinstance(option, bool):
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and float(value) == float(option):
                return True
        elif isinstance(value, str) and isinstance(option, str):
            said, wanted = value.strip().lower(), option.lower()
            if said == wanted or (len(wanted) > 3 and wanted in said):
                return True
    return False


def right_calls(made: list[ToolCall], expected: list[dict[str, Any]]) -> bool:
    """Every expected call made (in any order), and nothing else."""
    if len(made) != len(expected):
        return False
    left = list(made)
    for want in expected:
        hit = next((c for c in left if c.name == want["name"] and _arguments_fit(
            json.loads(c.arguments), want["arguments"])), None)
        if hit is None:
            return False
        left.remove(hit)
    return True


def _arguments_fit(arguments: dict[str, Any], wanted: dict[str, list[Any]]) -> bool:
    return all(matches(arguments.get(key), allowed) for key, allowed in wanted.items())


def ask_case(client: InferenceClient, tools: dict[str, Tool], case: dict[str, Any],
             mode: str) -> CaseResult:
    offered = [tools[name] for name in case["tools"]]
    parallel = case["kind"] == "parallel"
    sampling = p.SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, seed=0)
    if mode == "required":
        sampling = replace(sampling, json_schema=call_schema(
            offered, ToolChoice("required"), parallel))
    else:
        sampling = replace(sampling, call_schema=auto_call_schema(offered, parallel))
    done = client.reply_blocking([{"role": "user", "content": case["ask"]}], sampling,
                                 tools=tools_json(offered))
    made = read_calls(done.text, offered).calls
    return CaseResult(case["kind"], case["ask"], mode, right_calls(made, case["calls"]),
                      [f"{c.name}({c.arguments})" for c in made], done.text[:300])


def run_tools_bench(ws: Workspace, record: ModelRecord) -> dict[str, Any]:
    tools, all_cases = cases()
    client = InferenceClient(log_file=ws.home.logs / "bench-tools-worker.log", home=ws.home)
    results: list[CaseResult] = []
    started = time.perf_counter()
    try:
        client.start()
        client.load_blocking(str(record.path), n_ctx=4096,
                             template=ws.settings.template_for(record.name))
        for mode in ("auto", "required"):
            for case in all_cases:
                if mode == "required" and case["kind"] == "irrelevance":
                    continue
                results.append(ask_case(client, tools, case, mode))
    finally:
        client.close()
    return summarize(record.name, results, time.perf_counter() - started)


def summarize(model: str, results: list[CaseResult], seconds: float) -> dict[str, Any]:
    table: dict[str, dict[str, str]] = {}
    for mode in ("auto", "required"):
        for kind in KINDS:
            picked = [r for r in results if r.mode == mode and r.kind == kind]
            if picked:
                table.setdefault(kind, {})[mode] = \
                    f"{sum(r.right for r in picked)}/{len(picked)}"
    summary = [f"{model}: tool use, right calls (auto | required by grammar)"]
    summary += [f"  {kind:<12} {row.get('auto', '-'):>6} | {row.get('required', '-'):>6}"
                for kind, row in table.items()]
    summary.append(f"  {seconds:.0f} s in all")
    return {"model": model, "table": table, "seconds": round(seconds, 1),
            "summary": summary, "cases": [asdict(r) for r in results]}
