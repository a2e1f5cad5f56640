"""The worker protocol: every message survives a round trip; junk is refused."""

from __future__ import annotations

import pytest

from app.inference import protocol as p

SAMPLES = [
    p.Load("/m.gguf", 2048, 10, 4, True),
    p.Chat("r1", [{"role": "user", "content": "hé ✓"}],
           p.SamplingParams(temperature=0.2, seed=7, stop=["\n\n"])),
    p.Chat("s1", [{"role": "user", "content": "1, 2,"}],
           p.SamplingParams(json_schema='{"type": "object"}'), raw=True),
    p.Chat("s2", [{"role": "user", "content": "yes?"}],
           p.SamplingParams(grammar='root ::= "yes" | "no"')),
    p.Cancel("r1"), p.Unload(), p.Shutdown(),
    p.Hello(p.PROTOCOL_VERSION, 42, "llama-cpp-python 0.3", False),
    p.LoadProgress(0.5),
    p.Loaded("/m.gguf", 2048, 8192, 0, 2, "gguf", "abc", 0.4),
    p.ContextTrimmed("r1", 4, 300, 512),
    p.Tokens("r1", "Hello", 2),
    p.Done("r1", "Hello", p.ReplyStats(10, 0, 2, 0.1, 100.0, 50.0, 0.2, "stop")),
    p.Log("WARNING", "careful"),
    p.Error("load_failed", "bad file"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.kind)
def test_round_trip(message: object) -> None:
    assert p.decode(p.encode(message)) == message


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[]", b'{"kind": "format_disk"}',
                                  b'{"kind": "chat", "request_id": "x"}',
                                  b'{"kind": "chat", "request_id": "x", "messages": [],'
                                  b' "sampling": {"temperature": -1}}'])
def test_junk_is_refused(data: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode(data)


@pytest.mark.parametrize("fields", [
    {"grammar": 'root ::= "a"', "json_schema": '{"type": "object"}'},  # both
    {"json_schema": "{not json"}, {"json_schema": "[1, 2]"}])
def test_structured_output_settings_are_checked(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="grammar|schema"):
        p.SamplingParams(**fields)
