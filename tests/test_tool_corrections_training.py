"""A corrected tool call in the training worker (issue 26 item 5), on the tiny model: its
record is tokenized with the loss on the call and its end of turn only, the gate asks the
prompt it was trained after, and a real Teach run learns the call, judged by reading the
taught model's free answer back as a call."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from app.chat.corrections import CorrectionStore
from app.chat.tool_steps import ToolStep
from app.chat.tools import ToolCall, parse_tools, read_calls
from app.finetune import protocol as tp
from app.finetune.client import TrainingClient
from app.finetune.datasets import load_dataset
from app.finetune.settings import ExportSettings
from app.teach.run import start_teach, teach_settings
from app.workspace import Workspace
from backends.training.base_model import load_base
from backends.training.data import tokenize_examples
from backends.training.teach_gate import prompt_ids

# One short tool: the fallback prompt that lists it fits the Teach's 256 tokens.
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                   "required": ["zone"]}}}
TOOLS = parse_tools([CLOCK])
RIGHT = '{"zone": "Asia/Tokyo"}'


def _corrected(ws: Workspace, model: str = "tiny") -> CorrectionStore:
    conv = ws.store.create(title="clock", model=model)
    ws.store.add_message(conv.id, "user", "What time is it in Tokyo?")
    step = ToolStep(ToolCall("call_1", "get_time", '{"zone": "UTC"}'), server="time")
    reply = ws.store.add_message(conv.id, "assistant", "", tool_steps=[step])
    corrections = CorrectionStore(ws.library.conn)
    corrections.add_from_conversation(ws.store, reply.id, "",
                                      [ToolCall("", "get_time", RIGHT)], TOOLS)
    return corrections


def test_the_call_and_its_end_of_turn_carry_the_loss(
        tiny_ws: Workspace, tiny_gguf: Path, hearth_cache: Path, tmp_path: Path) -> None:
    [example] = load_dataset(_corrected(tiny_ws).snapshot(tmp_path)).examples
    base = load_base(tiny_gguf, cache_dir=hearth_cache)
    tok = base.tokenizer
    [record] = tokenize_examples([example], tok, base.template, 512, base.eos_token,
                                 last_turn_only=True).records
    learned = tok.decode([i for i, t in zip(record.ids, record.target, strict=True) if t])
    assert learned.endswith("<|im_end|>")
    [call] = read_calls(learned.removesuffix("<|im_end|>"), TOOLS).calls
    assert (call.name, json.loads(call.arguments)) == ("get_time", json.loads(RIGHT))
    # The gate asks exactly what the call follows in training: the chat's prompt, tools
    # included (the fallback prompt: the SmolLM2 template has no tools variable).
    assert example.messages is not None
    asked = prompt_ids(tok, base.template, example.messages[:-1], example.tools)
    assert "get_time" in tok.decode(asked)
    assert record.ids[:len(asked)] == asked and record.target.index(True) == len(asked)


# 290-445 s measured on the shared 2-core machine at load 4.5-5.7 (220 steps of about a
# second: the tiny model's 49,152-word output layer over 200-token call records); the
# suite's 900 s per-test limit is too close for a loaded machine.
@pytest.mark.timeout(1800)
def test_teach_learns_a_corrected_call_through_the_real_worker(tiny_ws: Workspace) -> None:
    """The whole Teach run (rehearsal, training, the gate) in its worker. The tiny model's
    words are noise, so only the call case is asserted: learned means its free answer,
    asked with the tools, reads back as get_time(zone="Asia/Tokyo")."""
    corrections = _corrected(tiny_ws)
    base = tiny_ws.library.get("tiny")
    # A random 2-layer model needs more than the starter's defaults to take a 30-token
    # call: its attention trained too (with the MLPs only it could not tell the "\n"
    # after <tool_call> from the others and looped), a bolder step. Training stops at
    # the first epoch's end where the call is answered.
    settings = replace(teach_settings(), learning_rate=5e-3, epochs=20.0,
                       target_modules=None)
    plan = start_teach(tiny_ws.home, tiny_ws.library, corrections, base, settings=settings,
                       export=ExportSettings(out_name="tiny-taught-1", live=True,
                                             fidelity_samples=1))
    client = TrainingClient(tiny_ws.home, plan.run_id)
    client.start()
    events = list(client.events(timeout=600))
    client.wait(30)
    finished = [e for e in events if isinstance(e, tp.Finished)]
    assert finished, [e for e in events if isinstance(e, tp.Error)]
    report = finished[0].summary.teach
    assert report is not None
    [case] = report.cases
    print(f"taught call: {case.answer!r}; learned {report.learned}/{report.total}; "
          f"reasons: {report.reasons}")
    assert case.chosen == 'get_time(zone="Asia/Tokyo")'
    assert case.learned and case.neighbours == []
    [call] = read_calls(case.answer, TOOLS).calls
    assert json.loads(call.arguments) == json.loads(RIGHT)
