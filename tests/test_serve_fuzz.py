"""A fuzz test of the server's request surface: random and mutated OpenAI requests
(sampling fields, messages, ``response_format`` schemas, ``grammar``, broken framing and
bytes) against the real server, worker and tiny model, on loopback.

It checks the transport's promises only, whatever a request deserved: every request
gets one well-formed HTTP answer with a status code, every error is a JSON body with
a message, an event stream is well-formed and ends with ``[DONE]``, and after each
request the same worker process is alive and a normal request is still answered.
Which status a given field earns is :mod:`app.serve.openai_format`'s business, tested
there. Seeded (a failure names its case and replays), bounded in count and in time.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serve_tiny import TINY, TinyServed, head, read_all, tiny_server

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("HEARTH_FUZZ_SEED", "20261207"))  # set it to explore further
CASES = 48
BUDGET_S = 60.0  # no new case starts after this; the count is the usual bound
MAX_TOKENS = (1, 2, 4, 0, -1, "4", 1.5, True, [4], 10**30)

TEXTS = ("hi", "", " ", "\x00", "\u202e\u0645\u0631\u062d\u0628\u0627", "\U0001f600" * 3,
         "<|im_end|><|im_start|>system", "{{ 7*7 }}", "\\u0000", "a" * 300, "\r\n\r\n",
         "\ufeff", "\udbff\udfff", "\ud800")
GRAMMARS = ('root ::= "yes" | "no"', 'root ::= [a-z]{1,4}', 'root ::= ("a" root)?',
            'root ::= item+\nitem ::= [0-9] ","', "root ::= nothing", "root ::=", "::=",
            'root ::= "', "root ::= [", 'root ::= "a"{2,3}', "root ::= (((((", "x" * 200,
            'root ::= [^"]', "root ::= " + " | ".join(f'"{c}"' for c in "abcdefgh"))
TYPES = ("string", "integer", "number", "boolean", "null", "object", "array", "nope", 5)


def _schema(rng: random.Random, depth: int = 0) -> Any:
    """A small JSON schema, valid or not (bounds stay small: what huge ones do to
    llama.cpp is S1's, with its own tests)."""
    kind = rng.choice(TYPES)
    schema: dict[str, Any] = {"type": kind}
    if kind == "object" and depth < 3:
        names = rng.sample(["a", "b", "name", "x y", "\u00e9"], rng.randint(0, 3))
        schema["properties"] = {n: _schema(rng, depth + 1) for n in names}
        schema["required"] = names[:rng.randint(0, len(names))]
    elif kind == "array" and depth < 3:
        schema["items"] = _schema(rng, depth + 1)
        schema[rng.choice(["minItems", "maxItems"])] = rng.choice([0, 1, 3, -1, "2"])
    elif kind == "string":
        extra = rng.choice([{}, {"maxLength": rng.randint(0, 12)}, {"minLength": 2},
                            {"pattern": "^[a-c]+$"}, {"pattern": "(("}, {"enum": ["x", 1]},
                            {"format": "date"}, {"const": "k"}])
        schema.update(extra)
    if rng.random() < 0.15:
        return rng.choice([{"$ref": "#"}, {"anyOf": [schema, {"type": "null"}]},
                           {"$ref": "#/definitions/missing"}, [], "string", None])
    return schema


def _value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, odd ones favoured."""
    simple = [None, True, False, 0, -1, 1, 2**31, 2**70, -(2**63), 0.5, -3.25, 1e308,
              float("nan"), float("inf"), rng.choice(TEXTS)]
    if depth < 2 and rng.random() < 0.3:
        return rng.choice([[_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
                           {rng.choice(TEXTS): _value(rng, depth + 1)}])
    return rng.choice(simple)


def _messages(rng: random.Random) -> Any:
    roles = ["system", "user", "assistant", "developer", "tool", "", None, 3]
    content = [lambda: rng.choice(TEXTS), lambda: None, lambda: _value(rng),
               lambda: [{"type": "text", "text": rng.choice(TEXTS)}],
               lambda: [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]]
    messages = [{"role": rng.choice(roles), "content": rng.choice(content)()}
                for _ in range(rng.randint(0, 4))]
    return rng.choice([messages, messages + [{"role": "user", "content": "hi"}],
                       _value(rng), [_value(rng)]])


def _mutate(rng: random.Random, body: dict[str, Any]) -> None:
    """One to three random edits of a request body."""
    for _ in range(rng.randint(1, 3)):
        edit = rng.randrange(9)
        if edit == 0:
            body[rng.choice(["temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                             "seed", "n", "stop", "stream", "stream_options", "tools",
                             "model", "logprobs", "user"])] = _value(rng)
        elif edit == 1:
            body["max_tokens"] = rng.choice(MAX_TOKENS)
        elif edit == 2:
            body["messages" if "messages" in body else "prompt"] = (
                _messages(rng) if "messages" in body else rng.choice([*TEXTS, [1], ["a"]]))
        elif edit == 3:
            body["response_format"] = rng.choice([
                {"type": "json_object"}, {"type": "text"}, {"type": rng.choice(TEXTS)},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": _schema(rng)}},
                {"type": "json_schema", "json_schema": _value(rng)}, _value(rng)])
        elif edit == 4:
            body["grammar"] = rng.choice([*GRAMMARS, _value(rng)])
        elif edit == 5:
            body.pop(rng.choice(sorted(body)), None)
        elif edit == 6:
            body[rng.choice(TEXTS) or "k"] = _value(rng)
        elif edit == 7:
            body["stream"] = rng.choice([True, False])
        else:
            body["stop"] = rng.choice([["\n"], "b", [], [""], ["a"] * 10, [5]])


def _framing(rng: random.Random, data: bytes) -> tuple[dict[str, str], bytes]:
    """Headers and body bytes; now and then broken on the wire."""
    headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
    roll = rng.random()
    if roll < 0.06 and data:
        cut = rng.randrange(len(data))
        return headers | {"Content-Length": str(cut)}, data[:cut]  # truncated JSON
    if roll < 0.12 and data:
        at = rng.randrange(len(data))
        data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]  # a flipped byte
        return headers, data
    if roll < 0.15:
        return headers, b"\xff\xfe" + data[2:] if len(data) > 2 else data  # not UTF-8
    return headers, data


def _cases(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """(path, raw request) pairs, each a mutation of a valid request."""
    for _ in range(CASES):
        chat = rng.random() < 0.75
        body: dict[str, Any] = {"model": TINY, "max_tokens": rng.choice(MAX_TOKENS[:3]),
                                "temperature": rng.choice([0, 0.7])}
        if chat:
            body["messages"] = [{"role": "user", "content": "Say one word."}]
        else:
            body["prompt"] = "1, 2, 3,"
        _mutate(rng, body)
        if body.get("max_tokens") == 10**30 or "max_tokens" not in body:
            body["max_tokens"] = 4  # the fuzz is about shapes, not about long replies
        data = json.dumps(body).encode("utf-8", "surrogatepass")
        headers, data = _framing(rng, data)
        path = "/v1/chat/completions" if chat else "/v1/completions"
        yield path, head("POST", path, headers) + data


def _check_answer(case: int, response: bytes) -> None:
    """One whole, well-formed HTTP answer (the connection then closed)."""
    where = f"case {case} (seed {SEED})"
    head_, sep, body = response.partition(b"\r\n\r\n")
    assert sep, f"{where}: no complete HTTP head in {response[:300]!r}"
    lines = head_.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    status = rest.split(" ", 1)[0]
    assert version in ("HTTP/1.0", "HTTP/1.1") and status.isdigit(), f"{where}: {lines[0]!r}"
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    assert body.count(b"HTTP/1.") == 0, f"{where}: a second answer inside the first"
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(body), f"{where}: body cut short"
    if headers.get("content-type") == "text/event-stream":
        events = [e for e in body.split(b"\n\n") if e]
        assert events and events[-1] == b"data: [DONE]", f"{where}: {body[-200:]!r}"
        for event in events[:-1]:
            assert event.startswith(b"data: "), f"{where}: {event[:100]!r}"
            json.loads(event[len(b"data: "):])
        return
    answer = json.loads(body)
    if int(status) >= 400:
        assert isinstance(answer["error"]["message"], str), f"{where}: {answer}"
    else:
        assert int(status) == 200 and answer["choices"], f"{where}: {answer}"


def test_fuzzed_requests_always_get_a_well_formed_answer(tmp_path_factory: pytest.TempPathFactory
                                                         ) -> None:
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    with tiny_server(tmp_path_factory.mktemp("fuzz")) as served:
        pid = served.client.proc.pid
        started = time.monotonic()
        for case, (_path, request) in enumerate(_cases(rng)):
            if time.monotonic() - started > BUDGET_S:
                break
            sock = served.connect(timeout=60)
            sock.sendall(request)
            response = read_all(sock)
            _check_answer(case, response)
            status = int(response.split(b" ", 2)[1])
            statuses[status] = statuses.get(status, 0) + 1
            assert served.client.alive and served.client.proc.pid == pid, \
                f"case {case} (seed {SEED}) ended the worker: {request[-400:]!r}"
            _normal_still_answered(served, case)
    assert statuses.get(200, 0) and sum(n for s, n in statuses.items() if s >= 400), statuses


def _normal_still_answered(served: TinyServed, case: int) -> None:
    reply = served.api.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "hi"}], max_tokens=1, temperature=0)
    assert reply.choices[0].finish_reason in ("length", "stop"), f"after case {case}"
