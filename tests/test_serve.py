"""The local server with the real ``openai`` client, the real starter model and the
real worker: streaming, stop, max_tokens, plain completions, structured output, the
key, the Host check and CORS; and a chat turn sharing the worker with it."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from app.chat.tools import auto_call_schema, parse_tools
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.serve import openai_format as fmt
from app.serve.models import OwnModels
from app.serve.security import KEY_ENV, api_key, host_allowed, key_path, origin_allowed
from app.serve.server import LocalServer
from app.workspace import Workspace, open_workspace

pytestmark = pytest.mark.slow
MODEL = "SmolLM2-135M-Instruct"
ROOT = Path(__file__).resolve().parent.parent
HI = [{"role": "user", "content": "Say hello to Ada."}]
ENV_KEY = "k-123-from-the-environment"  # a $HEARTH_API_KEY needs 20 characters or more
PERSON = {"type": "object",
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


class Served:
    def __init__(self, server: LocalServer, client: InferenceClient, key: str) -> None:
        self.server, self.client, self.key = server, client, key
        self.api = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0,
                                 timeout=120)

    def raw(self, method: str, path: str, headers: dict[str, str], body: Any = None
            ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=120)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, starter_gguf: Path
           ) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)
        ws: Workspace = open_workspace(tmp_path_factory.mktemp("serve-home"))
        assert MODEL in [r.name for r in ws.library.list()]
        key = api_key(ws.home.root)
        client = InferenceClient(home=ws.home)  # no listener: stream_chat works beside
        host = OwnModels(ws, client)
        host.ready(MODEL)
        server = LocalServer(host, key, port=0)
        server.start()
        try:
            yield Served(server, client, key)
        finally:
            server.stop()
            client.close()
            ws.close()
    assert not client.alive


def test_the_key_is_kept_owner_only_and_the_environment_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key = api_key(tmp_path)
    assert len(key) > 30 and api_key(tmp_path) == key  # made once, then kept
    assert stat.S_IMODE(os.stat(key_path(tmp_path)).st_mode) == 0o600
    os.chmod(key_path(tmp_path), 0o644)
    assert api_key(tmp_path) == key
    assert stat.S_IMODE(os.stat(key_path(tmp_path)).st_mode) == 0o600
    monkeypatch.setenv(KEY_ENV, "from-the-environment")
    assert api_key(tmp_path) == "from-the-environment"


def test_loopback_names_and_local_origins() -> None:
    for host in ("localhost", "localhost:8337", "127.0.0.1:1", "[::1]:8337", "LOCALHOST"):
        assert host_allowed(host), host
    for host in (None, "", "evil.example", "evil.example:8337", "127.0.0.1.evil.example",
                 "localhost.evil.example"):
        assert not host_allowed(host), host
    for origin in ("http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443"):
        assert origin_allowed(origin), origin
    for origin in (None, "null", "https://evil.example", "http://localhost.evil.example",
                   "file://localhost", "http://127.0.0.2"):
        assert not origin_allowed(origin), origin


def test_models_are_listed_by_library_name(served: Served) -> None:
    assert MODEL in [m.id for m in served.api.models.list()]


def test_a_whole_reply_respects_max_tokens(served: Served) -> None:
    reply = served.api.chat.completions.create(model=MODEL, messages=HI, max_tokens=4,
                                               temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 4 and reply.usage.prompt_tokens > 5


def test_a_reply_streams_in_pieces(served: Served) -> None:
    stream = served.api.chat.completions.create(model=MODEL, messages=HI, max_tokens=12,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices
              and c.choices[0].delta.content]
    assert len(pieces) >= 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12
    whole = served.api.chat.completions.create(model=MODEL, messages=HI, max_tokens=12,
                                               temperature=0)
    assert "".join(pieces) == whole.choices[0].message.content  # greedy: the same reply


def test_a_stop_string_ends_the_reply_before_it(served: Served) -> None:
    free = served.api.chat.completions.create(model=MODEL, messages=HI, max_tokens=16,
                                              temperature=0).choices[0].message.content
    words = free.split()
    assert len(words) >= 3, free
    stop = " " + words[2]
    stopped = served.api.chat.completions.create(model=MODEL, messages=HI, max_tokens=16,
                                                 temperature=0, stop=[stop]).choices[0]
    assert stopped.finish_reason == "stop"
    assert stopped.message.content == free[:free.index(stop)]


def test_plain_completion(served: Served) -> None:
    reply = served.api.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=6,
                                          temperature=0)
    assert reply.choices[0].text.strip() and reply.usage.completion_tokens <= 6


def test_response_format_json_schema_gives_valid_json(served: Served) -> None:
    reply = served.api.chat.completions.create(
        model=MODEL, temperature=0.7, seed=3, max_tokens=60,
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": PERSON}})
    person = json.loads(reply.choices[0].message.content)
    assert set(person) == {"name", "age"}
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


def test_a_bad_grammar_is_refused_and_the_worker_lives_on(served: Served) -> None:
    with pytest.raises(openai.BadRequestError, match="grammar"):
        served.api.chat.completions.create(model=MODEL, messages=HI, max_tokens=4,
                                           extra_body={"grammar": "root ::= nothing"})
    assert served.client.alive
    assert served.api.chat.completions.create(model=MODEL, messages=HI, max_tokens=2
                                              ).choices[0].message.content


def test_an_unknown_model_is_a_404(served: Served) -> None:
    with pytest.raises(openai.NotFoundError, match="no model"):
        served.api.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=2)


def test_without_the_key_or_with_a_wrong_one_401(served: Served) -> None:
    wrong = openai.OpenAI(base_url=served.server.url, api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    status, _, body = served.raw("GET", "/v1/models", {"Host": "127.0.0.1"})
    assert status == 401 and b"API key" in body
    status, _, _ = served.raw("POST", "/v1/chat/completions", {"Host": "localhost"},
                              {"model": MODEL, "messages": HI, "max_tokens": 2})
    assert status == 401


def test_a_foreign_host_header_is_refused(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.key}"}
    status, _, body = served.raw("GET", "/v1/models", {**auth, "Host": "evil.example:80"})
    assert status == 403 and b"localhost" in body
    status, _, _ = served.raw("GET", "/v1/models", {**auth, "Host": "localhost:1"})
    assert status == 200


def test_cors_only_for_local_origins(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.key}", "Host": "127.0.0.1"}
    local = "http://localhost:5173"
    _, headers, _ = served.raw("GET", "/v1/models", {**auth, "Origin": local})
    assert headers.get("Access-Control-Allow-Origin") == local
    status, headers, _ = served.raw("OPTIONS", "/v1/chat/completions", {
        "Host": "127.0.0.1", "Origin": local, "Access-Control-Request-Method": "POST"})
    assert status == 204 and headers.get("Access-Control-Allow-Origin") == local
    assert "Authorization" in headers.get("Access-Control-Allow-Headers", "")
    for foreign in ("https://evil.example", "null"):
        status, headers, _ = served.raw("GET", "/v1/models", {**auth, "Origin": foreign})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers
        _, headers, _ = served.raw("OPTIONS", "/v1/models", {
            "Host": "127.0.0.1", "Origin": foreign, "Access-Control-Request-Method": "GET"})
        assert not any(h.lower().startswith("access-control") for h in headers)


def test_a_chat_turn_and_server_requests_share_one_worker(served: Served) -> None:
    """The chat's own reply and two server replies at once: all answered, each its own."""
    pid = served.client.proc.pid
    results: dict[str, str] = {}

    def ask(tag: str) -> None:
        results[tag] = served.api.chat.completions.create(
            model=MODEL, messages=HI, max_tokens=6, temperature=0).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(t,)) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    events = list(served.client.stream_chat(HI, p.SamplingParams(temperature=0,
                                                                 max_tokens=6)))
    for thread in threads:
        thread.join(timeout=120)
    done = events[-1]
    assert isinstance(done, p.Done) and done.stats.completion_tokens == 6
    assert results["a"] == results["b"] == done.text  # greedy, same prompt, same model
    assert served.client.proc.pid == pid  # one worker, one copy of the model


def test_hearth_serve_streams_to_the_openai_client_with_the_key(tmp_path: Path) -> None:
    """The command a person runs: the key from the environment, a free port, Ctrl+C."""
    env = dict(os.environ, HEARTH_HOME=str(tmp_path / "home"), HEARTH_API_KEY=ENV_KEY)
    # Ctrl+C as a terminal delivers it, whatever this test's own runner inherited: a
    # suite started in the background (`cmd &`) ignores SIGINT, and so would its child.
    proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "serve", "--port", "0"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = None
        assert proc.stderr is not None
        for line in proc.stderr:
            found = re.search(r"Serving \S+ at (http://127\.0\.0\.1:\d+/v1) \(API key: in "
                              r"\$HEARTH_API_KEY\)", line)
            if found:
                url = found.group(1)
                break
        assert url, "hearth serve did not say where it listens"
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep it drained
        api = openai.OpenAI(base_url=url, api_key=ENV_KEY, max_retries=0, timeout=120)
        pieces = [c.choices[0].delta.content for c in api.chat.completions.create(
            model=MODEL, messages=HI, max_tokens=6, stream=True) if c.choices
            and c.choices[0].delta.content]
        assert len(pieces) >= 2
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key=ENV_KEY[:-1], max_retries=0).models.list()
        assert not (tmp_path / "home" / "server-api-key").exists()  # the env's key wins
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0


TOKYO = [{"role": "user", "content": "What time is it in Tokyo?"}]
CLOCK = {"type": "function", "function": {
    "name": "get_current_time", "description": "The current time in an IANA time zone.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                   "required": ["timezone"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two whole numbers.",
    "parameters": {"type": "object", "required": ["a", "b"], "additionalProperties": False,
                   "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}


def test_a_named_tool_call_then_its_result_through_the_openai_client(served: Served) -> None:
    """The agent loop as a client runs it: the model calls, the client runs the tool and
    sends the result back, the model answers in text."""
    reply = served.api.chat.completions.create(
        model=MODEL, messages=TOKYO, tools=[CLOCK, ADD], temperature=0, max_tokens=60,
        tool_choice={"type": "function", "function": {"name": "get_current_time"}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_current_time" and call.id.startswith("call_")
    assert set(json.loads(call.function.arguments)) == {"timezone"}
    follow = served.api.chat.completions.create(
        model=MODEL, tools=[CLOCK, ADD], tool_choice="none", temperature=0, max_tokens=20,
        messages=[*TOKYO,
                  {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                  {"role": "tool", "tool_call_id": call.id, "content": "09:00 JST"}])
    assert follow.choices[0].finish_reason in ("stop", "length")
    assert follow.choices[0].message.content and not follow.choices[0].message.tool_calls


def test_a_required_call_streams_as_tool_call_deltas(served: Served) -> None:
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    finishes = []
    for chunk in served.api.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Add 2 and 3."}],
            tools=[CLOCK, ADD], tool_choice="required", parallel_tool_calls=False,
            temperature=0, max_tokens=60, stream=True):
        delta = chunk.choices[0].delta
        for part in delta.tool_calls or []:
            if part.function and part.function.name:
                names[part.index] = part.function.name
            arguments[part.index] = arguments.get(part.index, "") + (
                part.function.arguments or "" if part.function else "")
        finishes.append(chunk.choices[0].finish_reason)
    assert len(names) == 1 and names[0] in ("add", "get_current_time")
    assert isinstance(json.loads(arguments[0]), dict)
    assert finishes[-1] == "tool_calls"


def test_bad_tool_requests_get_a_clear_400_and_the_worker_lives_on(served: Served) -> None:
    deep: dict[str, Any] = {"type": "object", "properties": {}}
    node = deep
    for _ in range(100):
        node["properties"]["x"] = {"type": "object", "properties": {}}
        node = node["properties"]["x"]
    bad = {
        "needs 'tool_call_id'": {"messages": [*TOKYO, {"role": "tool", "content": "9"}]},
        "too deep": {"messages": TOKYO, "tools": [{"type": "function", "function": {
            "name": "deep", "parameters": deep}}]},
        "not in 'tools'": {"messages": TOKYO, "tools": [CLOCK], "tool_choice": {
            "type": "function", "function": {"name": "rm"}}},
    }
    for why, body in bad.items():
        with pytest.raises(openai.BadRequestError, match=why):
            served.api.chat.completions.create(model=MODEL, max_tokens=4, **body)
    assert served.client.alive
    cut = served.api.chat.completions.create(  # a call cut short comes back as its text
        model=MODEL, messages=TOKYO, tools=[CLOCK], tool_choice="required", max_tokens=3)
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content


def test_auto_holds_a_call_the_model_begins_unless_the_client_holds_the_reply() -> None:
    """What the server asks the worker for (no worker needed): with ``tool_choice: "auto"``
    the schema of the calls, held once a reply begins one (backends/inference/
    call_grammar.py); the client's own ``response_format`` holds the whole reply instead."""
    body = {"model": MODEL, "messages": TOKYO, "tools": [CLOCK, ADD]}
    auto = fmt.parse({**body, "parallel_tool_calls": False}, p.SamplingParams(), chat=True)
    assert auto.sampling.call_schema == auto_call_schema(parse_tools([CLOCK, ADD]), False)
    assert not auto.sampling.json_schema
    many = fmt.parse({**body, "tool_choice": "auto"}, p.SamplingParams(), chat=True)
    assert json.loads(many.sampling.call_schema)["type"] == "array"  # parallel by default
    own = fmt.parse({**body, "response_format": {"type": "json_object"}},
                    p.SamplingParams(), chat=True)
    assert own.sampling.json_schema and not own.sampling.call_schema
    for choice in ("none", "required"):
        asked = fmt.parse({**body, "tool_choice": choice}, p.SamplingParams(), chat=True)
        assert not asked.sampling.call_schema, choice
