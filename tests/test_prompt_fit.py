"""Fitting a long conversation into the context is linear (finding S5 of issue 24).

The real Worker with llama.cpp tokenizing for the tiny model (SmolLM2's vocabulary and
ChatML template). Work is counted, not timed: the characters llama.cpp is asked to
tokenize and the template renders, for a conversation and one twice as long. The cut
is the one the old one-turn-at-a-time loop found (kept here as the reference).
The time is measured by ``python -m tests.benchmarks.bench_fit_prompt``.
"""

from __future__ import annotations

import http.client
import json
from multiprocessing import Pipe

import pytest

from app.inference import protocol as p
from backends.inference.llama_worker import Channel, Worker
from tests.benchmarks.bench_fit_prompt import conversation, counted
from tests.tiny_model import write_tiny_llama


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory):
    model = write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf")
    ours, theirs = Pipe()
    worker = Worker(Channel(ours))
    worker.load(p.Load(str(model), n_ctx=512))
    while theirs.poll(0.1):
        theirs.recv_bytes()
    yield worker
    worker.unload()


def quadratic_fit(worker: Worker, cmd: p.Chat) -> tuple[list[int], int]:
    """The loop fit_prompt ran before: render and tokenize again after each drop."""
    messages = [dict(m) for m in cmd.messages]
    n_ctx = worker.llm.n_ctx()
    budget = n_ctx - min(cmd.sampling.max_tokens, n_ctx // 2)
    dropped = 0
    while True:
        tokens = worker.tokenize(worker.render(messages, cmd.continue_last))
        if len(tokens) <= budget:
            return tokens, dropped
        first = 1 if messages[0]["role"] == "system" else 0
        keep_tail = 2 if cmd.continue_last else 1
        if len(messages) - first <= keep_tail:
            raise ValueError("too long")
        n = 2 if (len(messages) - first > keep_tail + 1
                  and messages[first + 1]["role"] == "assistant") else 1
        del messages[first:first + n]
        dropped += n


def _work(worker: Worker, n: int) -> dict[str, int]:
    counts = counted(worker)
    try:
        tokens, dropped = worker.fit_prompt(p.Chat("r", conversation(n),
                                                   p.SamplingParams(max_tokens=16)))
    finally:
        del worker.llm.tokenize  # the counting wrappers go again
        object.__delattr__(worker.template, "render")
    assert dropped > n - 40 and len(tokens) <= 512 - 16
    return counts


def test_the_work_grows_linearly_with_the_conversation(worker: Worker) -> None:
    small, double = _work(worker, 150), _work(worker, 300)
    # Quadratic fitting tokenized ~4x the characters for twice the messages.
    assert double["chars"] < 2.5 * small["chars"], (small, double)
    assert double["renders"] <= 8, double


@pytest.mark.parametrize("shape", ["plain", "system", "continue", "odd roles", "one long"])
def test_the_same_cut_as_before(worker: Worker, shape: str) -> None:
    messages = conversation(61)
    continue_last = False
    if shape == "system":
        messages.insert(0, {"role": "system", "content": "Be brief. " * 30})
    elif shape == "continue":
        messages.append({"role": "assistant", "content": "Well, it is"})
        continue_last = True
    elif shape == "odd roles":
        for i in range(0, 40, 3):
            messages[i]["role"] = "user"
    elif shape == "one long":
        messages[50]["content"] = "word " * 300
    cmd = p.Chat("r", messages, p.SamplingParams(max_tokens=64), continue_last=continue_last)
    assert worker.fit_prompt(cmd) == quadratic_fit(worker, cmd)


def test_a_message_too_long_on_its_own_is_still_refused(worker: Worker) -> None:
    cmd = p.Chat("r", [*conversation(20), {"role": "user", "content": "word " * 800}])
    with pytest.raises(ValueError, match="tokens long but the context holds 512"):
        worker.fit_prompt(cmd)


class _NoModel:
    """The server's model host with a client that only records what it is asked."""

    def __init__(self) -> None:
        self.client = self
        self.asked: list[int] = []

    def names(self) -> list[str]:
        return ["m"]

    def sampling(self, name: str) -> p.SamplingParams:
        return p.SamplingParams()

    def ready(self, name: str) -> None:
        pass

    def add_tap(self, tap: object) -> None:
        pass

    def remove_tap(self, tap: object) -> None:
        pass

    def cancel(self, request_id: str) -> None:
        pass

    def chat(self, messages: list[dict[str, str]], *args: object, **kwargs: object) -> str:
        self.asked.append(len(messages))
        from app.inference.client import WorkerError

        raise WorkerError(p.Error("no_model", "no model here"))


def test_the_server_bounds_a_request_in_messages() -> None:
    from app.serve.openai_format import MAX_MESSAGES
    from app.serve.server import LocalServer

    host = _NoModel()
    server = LocalServer(host, "hearth-test-key-0123456789", port=0)
    server.start()
    try:
        def post(n: int) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            body = {"model": "m", "max_tokens": 1,
                    "messages": [{"role": "user", "content": "hi"}] * n}
            conn.request("POST", "/v1/chat/completions", json.dumps(body), headers={
                "Authorization": "Bearer hearth-test-key-0123456789",
                "Content-Type": "application/json"})
            response = conn.getresponse()
            try:
                return response.status, response.read()
            finally:
                conn.close()

        status, text = post(MAX_MESSAGES + 1)
        assert status == 400 and f"at most {MAX_MESSAGES:,} messages".encode() in text
        assert host.asked == []  # refused before the worker saw it
        status, _ = post(MAX_MESSAGES)
        assert status == 503 and host.asked == [MAX_MESSAGES]  # passed on to the model
    finally:
        server.stop()
