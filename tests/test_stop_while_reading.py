"""Stop is heard while the worker reads a long prompt, not only between reply tokens
(Esc took 2-6 s on a long conversation: the whole prompt was read in one call first).
The real Worker and llama.cpp, on a tiny model with SmolLM2's vocabulary."""

from __future__ import annotations

from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import pytest

from app.inference import protocol as p
from backends.inference.llama_worker import Channel, Worker
from backends.inference.prefill import CPU_CHUNK
from tests.tiny_model import write_tiny_llama

LONG = " ".join(f"word{i}" for i in range(60))  # several chunks of prompt


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf")


@pytest.fixture
def worker(tiny: Path) -> Any:
    ours, theirs = Pipe()
    loaded = Worker(Channel(ours))
    loaded.load(p.Load(str(tiny), n_ctx=512))
    while theirs.poll(0.1):
        theirs.recv_bytes()
    yield loaded, theirs
    loaded.unload()
    theirs.close()
    ours.close()


def _events(app: Any) -> list[object]:
    out = []
    while app.poll(0.2):
        out.append(p.decode(app.recv_bytes()))
    return out


def test_stop_during_the_prompt_ends_the_reply_before_any_token(worker: Any) -> None:
    engine, app = worker
    llm = engine.llm
    read: list[int] = []
    real_eval = llm.eval

    def eval_then_stop(tokens: list[int]) -> None:
        read.append(len(tokens))
        real_eval(tokens)
        engine.cancelled.add("long")  # Stop arrives while the prompt is being read

    llm.eval = eval_then_stop
    sampling = p.SamplingParams(temperature=0.0, max_tokens=8)
    engine.chat(p.Chat("long", [{"role": "user", "content": LONG}], sampling))
    events = _events(app)
    assert read == [CPU_CHUNK], events  # one chunk read, then it stopped
    assert not any(isinstance(e, p.Tokens) and e.n_tokens for e in events)
    done = events[-1]
    assert isinstance(done, p.Done) and done.stats.finish_reason == "cancelled"
    assert done.stats.completion_tokens == 0 and done.text == ""
    # The next turn works, and reuses the chunk already read.
    llm.eval = real_eval
    engine.chat(p.Chat("again", [{"role": "user", "content": LONG}], sampling))
    again = _events(app)[-1]
    assert isinstance(again, p.Done) and again.stats.finish_reason != "cancelled"
    assert again.stats.cached_tokens >= CPU_CHUNK
    assert again.stats.prompt_tokens > 2 * CPU_CHUNK  # the stop came early in the prompt
