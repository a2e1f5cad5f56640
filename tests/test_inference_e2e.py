"""The real starter model through the real worker: load, stream, cancel, several turns
with KV-cache reuse, context overflow, refused files, and a worker killed mid-reply."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.chat.conversations import INTERRUPTED
from app.chat.turn import ChatSession
from app.inference import protocol as p
from app.inference.client import InferenceClient, WorkerError
from app.workspace import Workspace

pytestmark = pytest.mark.slow

GREEDY = p.SamplingParams(temperature=0.0, max_tokens=24, seed=1)


@pytest.fixture(scope="module")
def client(starter_gguf: Path) -> Iterator[InferenceClient]:
    c = InferenceClient()
    hello = c.start()
    assert hello.protocol_version == p.PROTOCOL_VERSION
    loaded = c.load_blocking(starter_gguf, n_ctx=2048, n_threads=2)
    assert loaded.template_source == "gguf" and loaded.n_ctx == 2048
    yield c
    c.close()
    assert not c.alive


def _reply(client: InferenceClient, messages: list[dict[str, str]],
           sampling: p.SamplingParams = GREEDY) -> tuple[str, p.Done, list[object]]:
    events = list(client.stream_chat(messages, sampling))
    done = events[-1]
    assert isinstance(done, p.Done), done
    streamed = "".join(e.text for e in events if isinstance(e, p.Tokens))
    assert streamed == done.text
    return done.text, done, events


def test_streams_a_reply_with_stats(client: InferenceClient) -> None:
    text, done, events = _reply(client, [{"role": "user", "content": "What is 2+2?"}])
    assert text.strip()
    assert sum(isinstance(e, p.Tokens) for e in events) >= 2  # it really streamed
    s = done.stats
    assert s.prompt_tokens > 5 and 0 < s.completion_tokens <= GREEDY.max_tokens
    assert s.ttft_s > 0 and s.prefill_tps > 0 and s.decode_tps > 0
    assert s.finish_reason in ("stop", "length") and s.template_source == "gguf"


def test_same_seed_same_reply(client: InferenceClient) -> None:
    msgs = [{"role": "user", "content": "Name a colour."}]
    warm = p.SamplingParams(temperature=0.9, seed=1234, max_tokens=16)
    assert _reply(client, msgs, warm)[0] == _reply(client, msgs, warm)[0]


def test_follow_up_turn_reuses_the_kv_cache(client: InferenceClient) -> None:
    history = [{"role": "user", "content": "Tell me about the moon."}]
    first, done1, _ = _reply(client, history)
    history += [{"role": "assistant", "content": first},
                {"role": "user", "content": "And the sun?"}]
    _, done2, _ = _reply(client, history)
    assert done2.stats.cached_tokens >= done1.stats.prompt_tokens - 1
    assert done2.stats.prompt_tokens - done2.stats.cached_tokens < 40


def test_cancel_mid_reply_then_next_turn_works(client: InferenceClient) -> None:
    request = client.chat([{"role": "user", "content": "Write a long story about a fox."}],
                          p.SamplingParams(temperature=0.0, max_tokens=2000))
    done = None
    while done is None:
        event = client.next_event(timeout=60)
        if isinstance(event, p.Tokens):
            client.cancel(request)
        elif isinstance(event, p.Done):
            done = event
    assert done.stats.finish_reason == "cancelled"
    assert done.stats.completion_tokens < 200
    text, _, _ = _reply(client, [{"role": "user", "content": "Say hello."}])
    assert text.strip()


def test_context_overflow_drops_oldest_turns(client: InferenceClient) -> None:
    filler = "This is a long message about nothing in particular. " * 40  # ~400 tokens
    messages = [{"role": "system", "content": "You are terse."}]
    for i in range(8):
        messages += [{"role": "user", "content": f"{i}: {filler}"},
                     {"role": "assistant", "content": "Noted."}]
    messages.append({"role": "user", "content": "What is the capital of France?"})
    text, done, events = _reply(client, messages)
    trimmed = [e for e in events if isinstance(e, p.ContextTrimmed)]
    assert trimmed and trimmed[0].dropped_messages >= 8
    assert trimmed[0].dropped_messages % 2 == 0  # whole turns only
    assert trimmed[0].prompt_tokens <= 2048
    assert done.stats.dropped_messages == trimmed[0].dropped_messages
    assert text.strip()


def test_message_longer_than_the_context_is_a_clear_error(client: InferenceClient) -> None:
    events = list(client.stream_chat([{"role": "user", "content": "word " * 3000}], GREEDY))
    assert isinstance(events[-1], p.Error) and events[-1].error_kind == "bad_request"
    assert "context" in events[-1].message
    assert _reply(client, [{"role": "user", "content": "Hi"}])[0].strip()


def test_bad_file_load_is_refused_and_worker_lives(tmp_path: Path, starter_gguf: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(64))
    c = InferenceClient()
    try:
        c.start()
        with pytest.raises(WorkerError, match="bad.gguf|truncated|cannot be right|header"):
            c.load_blocking(bad)
        assert c.alive
        c.load_blocking(starter_gguf, n_ctx=512)
        assert _reply(c, [{"role": "user", "content": "Hi"}])[0].strip()
    finally:
        c.close()


def test_worker_killed_mid_reply_keeps_the_conversation(workspace: Workspace,
                                                        starter_gguf: Path) -> None:
    c = InferenceClient()
    c.start()
    c.load_blocking(starter_gguf, n_ctx=1024)
    session = ChatSession(workspace.store, c)
    conv = workspace.store.create(title="crash")
    reply = session.send(conv.id, "Write a very long poem about the sea.",
                         p.SamplingParams(temperature=0.0, max_tokens=1000))
    died = None
    seen_tokens = 0
    while died is None:
        event = c.next_event(timeout=60)
        if isinstance(event, p.Tokens):
            seen_tokens += 1
            if seen_tokens == 3:
                os.kill(c.proc.pid, signal.SIGKILL)
        if isinstance(event, p.WorkerDied):
            died = event
        session.handle(event)
    assert died.signal == signal.SIGKILL and "killed" in died.message
    messages = workspace.store.messages(conv.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].status == INTERRUPTED and messages[1].content == reply.text
    assert messages[1].content  # the part produced before the crash is kept
    c.start()
    c.load_blocking(starter_gguf, n_ctx=1024)
    session.send(conv.id, "Say hi.", GREEDY)
    while (event := c.next_event(timeout=60)) and not session.handle(event):
        pass
    assert [m.role for m in workspace.store.messages(conv.id)] == ["user", "assistant"] * 2
    c.close()


def test_load_reports_progress_and_unload_frees_the_model(starter_gguf: Path) -> None:
    c = InferenceClient()
    try:
        c.start()
        c.load(starter_gguf, n_ctx=512)
        events = []
        while not isinstance(events[-1] if events else None, p.Loaded):
            events.append(c.next_event(timeout=120))
        # On a CPU whose optimized kernels crash, the load starts over with the safe
        # ones after a KernelFallback: the progress of that second load is the one shown.
        restarts = [i for i, e in enumerate(events) if isinstance(e, p.KernelFallback)]
        last_load = events[restarts[-1] + 1:] if restarts else events
        fractions = [e.fraction for e in last_load if isinstance(e, p.LoadProgress)]
        assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
        assert c.loaded is not None and c.loaded.path == str(starter_gguf)
        c.unload()
        assert isinstance(c.next_event(timeout=30), p.Unloaded) and c.loaded is None
        failed = list(c.stream_chat([{"role": "user", "content": "Hi"}]))
        assert isinstance(failed[-1], p.Error) and failed[-1].error_kind == "no_model"
    finally:
        c.close()


def test_an_aborted_worker_is_reported_and_replaced(starter_gguf: Path) -> None:
    died: list[p.WorkerDied] = []
    c = InferenceClient(listener=lambda e: died.append(e) if isinstance(e, p.WorkerDied)
                        else None)
    try:
        c.start()
        os.kill(c.proc.pid, signal.SIGABRT)  # what a GGML_ASSERT does
        c.proc.wait(10)
        deadline = time.monotonic() + 10
        while not died and time.monotonic() < deadline:
            time.sleep(0.05)
        assert died and died[0].signal == signal.SIGABRT and "aborted" in died[0].message
        assert not c.alive
        assert c.restart().protocol_version == p.PROTOCOL_VERSION and c.alive
    finally:
        c.close()


def test_cancel_sent_right_after_the_request_is_not_lost(client: InferenceClient) -> None:
    request = client.chat([{"role": "user", "content": "Write a long story about a cat."}],
                          p.SamplingParams(temperature=0.0, max_tokens=2000))
    client.cancel(request)
    events = []
    while not isinstance(events[-1] if events else None, p.Done):
        events.append(client.next_event(timeout=60))
    assert events[-1].stats.finish_reason == "cancelled"
    assert events[-1].stats.completion_tokens <= 2


def test_continue_extends_a_truncated_reply(client: InferenceClient, workspace: Workspace
                                            ) -> None:
    session = ChatSession(workspace.store, client)
    conv = workspace.store.create(title="continue")
    short = p.SamplingParams(temperature=0.0, max_tokens=6)

    def finish(reply: object) -> object:
        while True:
            done = session.handle(client.next_event(timeout=60))
            if done is not None:
                return done

    first = finish(session.send(conv.id, "List the days of the week.", short))
    assert first.saved.status == "truncated"
    extended = finish(session.continue_reply(conv.id, short))
    messages = workspace.store.messages(conv.id)
    assert [m.role for m in messages] == ["user", "assistant"]  # extended in place
    assert messages[1].content == first.saved.content + extended.text
    assert len(messages[1].content) > len(first.saved.content)
