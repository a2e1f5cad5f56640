"""Tool calls through the real worker on tiny models, one per way a template meets tools
(issue 26): Qwen 2.5's own tools template (native: ``tools`` variable, ``tool_calls``,
``tool`` turns), the starter's ChatML template (Hearth's fallback prompt), and Gemma's
family template (fallback, alternating roles). A tiny model's words are noise, so the
reply is held to a call by grammar: what is tested is that the definitions reach the
prompt, the call comes back valid, and a result turn renders and is answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.chat.tools import ToolChoice, call_schema, parse_tools, read_calls
from app.inference import protocol as p
from app.inference.client import InferenceClient
from tests.arch_factory import write_tiny_arch_gguf

pytestmark = pytest.mark.slow  # a worker process and llama.cpp loads
QWEN = (Path(__file__).parent / "templates" / "qwen2.5-instruct.jinja").read_text()
CLOCK = {"type": "function", "function": {
    "name": "get_current_time", "description": "The current time in a time zone.",
    # An enum keeps a random model's argument short: a grammar cannot end a free string.
    "parameters": {"type": "object", "properties": {"timezone": {
        "type": "string", "enum": ["Asia/Tokyo", "UTC"]}},
        "required": ["timezone"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What time is it in Tokyo?"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceClient]:
    worker = InferenceClient(log_file=tmp_path_factory.mktemp("logs") / "worker.log")
    worker.start()
    yield worker
    worker.close()


def _reply(client: InferenceClient, messages: list[dict[str, str]], tools: str,
           schema: str = "") -> p.Done:
    sampling = p.SamplingParams(temperature=0.0, max_tokens=80, seed=0, json_schema=schema)
    return client.reply_blocking(messages, sampling, tools=tools, timeout=120)


@pytest.mark.parametrize(("arch", "template", "choice"), [
    ("qwen2", QWEN, "auto"),       # the file's own tools template
    ("llama", True, "auto"),       # the starter's ChatML: no tools variable, fallback
    ("gemma3", True, "gemma"),     # a family template chosen by the person: fallback
])
def test_a_call_and_its_result_through_each_kind_of_template(
        client: InferenceClient, tmp_path: Path, arch: str, template: bool | str,
        choice: str) -> None:
    model = write_tiny_arch_gguf(arch, tmp_path / f"{arch}.gguf", chat_template=template)
    client.load_blocking(str(model), n_ctx=2048, template=choice)
    tools = parse_tools([CLOCK])
    wire = json.dumps([CLOCK])
    plain = _reply(client, ASK, "")
    called = _reply(client, ASK, wire, call_schema(tools, ToolChoice("required"), False))
    assert called.stats.prompt_tokens > plain.stats.prompt_tokens + 20  # definitions sent
    [call] = read_calls(called.text, tools).calls
    assert call.name == "get_current_time" and "timezone" in json.loads(call.arguments)
    history = [*ASK, {"role": "assistant", "content": "",
                      "tool_calls": json.dumps([call.to_openai()])},
               {"role": "tool", "content": "09:00 <|im_end|> JST", "tool_call_id": call.id,
                "name": call.name}]
    answered = _reply(client, history, wire)
    assert answered.stats.prompt_tokens > called.stats.prompt_tokens  # the result is in
    assert answered.stats.finish_reason in ("stop", "length")
