"""Safe llama.cpp kernels, automatically: the choice, the crash fallback, the memory.

The crash is injected with the worker's test switch (an abort on the first decode or the
first reply when the extra buffer types are on), which is what llama.cpp's AMX path does
on some machines; so these tests prove the fallback on any CPU. On such a machine the
real crash takes the same path.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.inference.kernels import OVERRIDE_ENV, KernelMemory, is_crash
from app.paths import resolve_home
from backends.inference.llama_compat import CRASH_TEST_ENV

GREEDY = p.SamplingParams(temperature=0.0, max_tokens=8, seed=1)
REAL_OR_INJECTED = (signal.SIGABRT, signal.SIGSEGV, signal.SIGILL)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_memory_choice_persists_per_machine_and_can_be_overridden(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    path = tmp_path / "kernels.json"
    memory = KernelMemory(path)
    before = memory.choose()
    memory.remember_safe(signal.SIGSEGV)
    again = KernelMemory(path).choose()
    assert not again.extra_bufts and "SIGSEGV" in again.reason
    assert json.loads(path.read_text())[KernelMemory.key()]["signal"] == "SIGSEGV"
    monkeypatch.setenv(OVERRIDE_ENV, "1")
    assert KernelMemory(path).choose().extra_bufts
    monkeypatch.delenv(OVERRIDE_ENV)
    KernelMemory(path).forget()
    assert KernelMemory(path).choose() == before
    # A damaged file is no memory, not a crash.
    path.write_text("{not json")
    assert KernelMemory(path).choose() == before


def test_only_crash_signals_count_as_crashes() -> None:
    assert is_crash(-signal.SIGSEGV) and is_crash(-signal.SIGILL) and is_crash(-signal.SIGABRT)
    assert not is_crash(-signal.SIGKILL) and not is_crash(0) and not is_crash(1)


def _events(client: InferenceClient, timeout: float = 120) -> list[object]:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        event = client.next_event(max(0.0, deadline - time.monotonic()))
        seen.append(event)
        if isinstance(event, p.Done | p.WorkerDied | p.Error):
            return seen
    raise AssertionError(f"no reply in time: {seen}")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["load", "chat"])
def test_a_crash_with_optimized_kernels_falls_back_and_is_remembered(
        point: str, starter_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.setenv(CRASH_TEST_ENV, point)
    home = resolve_home(tmp_path / "home")
    log = home.logs / "inference-worker.log"
    client = InferenceClient(log_file=log, home=home)
    try:
        client.start()
        client.load(starter_gguf, n_ctx=1024, n_threads=2)
        request = client.chat(QUESTION, GREEDY)  # sent at once: in flight at the crash
        events = _events(client)
        fallback = [e for e in events if isinstance(e, p.KernelFallback)]
        # The injected abort, or, on a CPU whose AMX path really crashes (one of this
        # project's CI machines), the real SIGSEGV/SIGILL on the warm-up decode first.
        assert len(fallback) == 1 and fallback[0].signal in REAL_OR_INJECTED
        assert "safe kernels" in fallback[0].message
        done = events[-1]
        assert isinstance(done, p.Done) and done.request_id == request and done.text.strip()
        assert client.loaded is not None and client.loaded.extra_bufts is False
        assert not any(isinstance(e, p.WorkerDied) for e in events)
        remembered = KernelMemory(home.kernels_file).safe_record()
        assert remembered is not None
        assert remembered.signal == signal.Signals(fallback[0].signal).name
        assert f"ended by signal {remembered.signal}" in log.read_text()
    finally:
        client.close()
    # The next start goes straight to the safe kernels: no crash, no fallback.
    second = InferenceClient(home=home)
    try:
        second.start()
        loaded = second.load_blocking(starter_gguf, n_ctx=1024, n_threads=2)
        assert loaded.extra_bufts is False
        events = list(second.stream_chat(QUESTION, GREEDY))
        assert isinstance(events[-1], p.Done)
        assert second.events.empty()
    finally:
        second.close()


@pytest.mark.slow
def test_a_second_crash_is_reported_with_what_was_tried(
        starter_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.setenv(CRASH_TEST_ENV, "load")
    client = InferenceClient()
    try:
        client.start()
        client.load_blocking(starter_gguf, n_ctx=1024, n_threads=2)
        assert client.loaded is not None and not client.loaded.extra_bufts
        request = client.chat(QUESTION, p.SamplingParams(temperature=0.0, max_tokens=400))
        first = client.next_event(120)
        while not isinstance(first, p.Tokens):  # the reply is under way: crash it there
            first = client.next_event(120)
        assert first.request_id == request
        os.kill(client.proc.pid, signal.SIGSEGV)  # crashes again, safe kernels and all
        events = _events(client)
        died = events[-1]
        assert isinstance(died, p.WorkerDied) and died.signal == signal.SIGSEGV
        assert died.tried and "safe CPU kernels" in died.message
        assert not any(isinstance(e, p.Done) for e in events)  # the reply ended with it
    finally:
        client.close()

