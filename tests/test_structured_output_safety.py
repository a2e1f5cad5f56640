"""Constrained output that crashed or exhausted the worker (review 2026-12-07, S1), with
the real server, worker and starter model: refused at the server and again in the
worker, a grammar dead end stops one reply instead of the process, and a crash under a
grammar no longer switches the optimized kernels off for good."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.inference.kernels import OVERRIDE_ENV, KernelMemory
from app.paths import HearthHome, resolve_home
from app.serve.models import OwnModels
from app.serve.security import KEY_ENV, api_key
from app.serve.server import LocalServer
from app.workspace import open_workspace
from backends.inference.llama_compat import CRASH_TEST_ENV

pytestmark = pytest.mark.slow
MODEL = "SmolLM2-135M-Instruct"
ROOT = Path(__file__).resolve().parent.parent
HI = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
NUL = 'root ::= "\\x00"'  # 15 bytes: SIGABRT on the first sample
NOTHING = "root ::= [^\\x00-\\U0010FFFF]"
NESTED = "root ::= " + "(" * 100_000 + '"a"' + ")" * 100_000  # SIGSEGV in the parser
LONG = {"type": "string", "maxLength": 30_000}  # SIGSEGV inside make_grammar's pre-check
MANY = {"type": "array", "items": {"type": "integer"}, "minItems": 1_000_000_000}  # ~100 GB


class Served:
    def __init__(self, home: HearthHome, server: LocalServer, client: InferenceClient,
                 key: str) -> None:
        self.home, self.server, self.client, self.key = home, server, client, key

    def post(self, **fields: Any) -> tuple[int, dict[str, Any]]:
        body = {"model": MODEL, "messages": HI, "max_tokens": 4, **fields}
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=300)
        try:
            conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                         headers={"Authorization": f"Bearer {self.key}",
                                  "Host": "127.0.0.1", "Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, starter_gguf: Path
           ) -> Iterator[Served]:
    """``hearth serve`` on a fresh home, the model just loaded: the next reply is the
    first after a load, when a crash used to be taken for the kernels'."""
    with pytest.MonkeyPatch.context() as mp:
        for name in (KEY_ENV, OVERRIDE_ENV, CRASH_TEST_ENV):
            mp.delenv(name, raising=False)
        ws = open_workspace(tmp_path_factory.mktemp("structured-home"))
        ws.settings.load.n_ctx, ws.settings.load.n_threads = 1024, 2
        client = InferenceClient(home=ws.home)
        host = OwnModels(ws, client)
        host.ready(MODEL)
        server = LocalServer(host, api_key(ws.home.root), port=0)
        server.start()
        try:
            yield Served(ws.home, server, client, api_key(ws.home.root))
        finally:
            server.stop()
            client.close()
            ws.close()


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema",
                                "json_schema": {"name": "x", "schema": schema}}}


def test_the_reviews_crashing_grammars_get_a_400_and_nothing_is_remembered(
        served: Served) -> None:
    pid = served.client.proc.pid
    for fields, where in (({"grammar": NUL}, "'grammar'"), ({"grammar": NOTHING}, "'grammar'"),
                          ({"grammar": NESTED}, "nested"),
                          (_schema(LONG), "maxLength 30000"), (_schema(MANY), "minItems")):
        status, body = served.post(**fields)
        assert status == 400, (where, body)
        assert where in body["error"]["message"]
    assert served.client.alive and served.client.proc.pid == pid
    assert KernelMemory(served.home.kernels_file).safe_record() is None
    status, body = served.post(grammar='root ::= "yes" | "no"')
    assert status == 200 and body["choices"][0]["message"]["content"] in ("yes", "no")
    assert served.client.loaded is not None and served.client.loaded.extra_bufts


def test_the_worker_refuses_them_too(served: Served) -> None:
    """The chat's path (a remembered Structured output) reaches the worker unchecked."""
    pid = served.client.proc.pid
    for sampling in (p.SamplingParams(grammar=NUL), p.SamplingParams(grammar=NESTED),
                     p.SamplingParams(json_schema=json.dumps(LONG)),
                     p.SamplingParams(json_schema=json.dumps(MANY))):
        events = list(served.client.stream_chat(HI, sampling))
        refused = events[-1]
        assert isinstance(refused, p.Error) and refused.error_kind == "bad_request", refused
        assert "structured output is refused" in refused.message
    assert served.client.proc.pid == pid
    assert KernelMemory(served.home.kernels_file).safe_record() is None


DEAD_END = textwrap.dedent('''
    import llama_cpp
    from app.models.library import find_starter_gguf
    from backends.inference import llama_compat as compat
    llm = llama_cpp.Llama(model_path=str(find_starter_gguf()), n_ctx=256, n_threads=2,
                          verbose=False)
    # A token this vocabulary does not have: a dead end after "ab", as a character no
    # token spells would be with another vocabulary (Hearth's own check refuses this form).
    guard = compat.GrammarGuard(llm, 'root ::= "ab" <[99999999]>')
    prompt = llm.tokenize(b"Say ab:", special=True)
    text = b""
    try:
        for token in compat.generate(llm, prompt, guard, temp=0.0):
            text += llm.detokenize([token])
    except compat.GrammarDeadEnd as exc:
        print("stopped after", text, "-", exc)
''')


def test_a_grammar_dead_end_stops_the_reply_instead_of_aborting() -> None:
    result = subprocess.run([sys.executable, "-c", DEAD_END], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]  # the chain aborted: -6
    assert "stopped after b'ab' - " in result.stdout
    assert "allows nothing this model can write after" in result.stdout


def _events(client: InferenceClient, timeout: float = 300) -> list[Any]:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        event = client.next_event(max(0.0, deadline - time.monotonic()))
        seen.append(event)
        if isinstance(event, p.Done | p.WorkerDied | p.Error):
            return seen


@pytest.fixture
def crashing_replies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                     ) -> Iterator[tuple[InferenceClient, HearthHome]]:
    """A client whose worker aborts at the start of a reply with the optimized kernels on
    (the test switch of the AMX fault), just after a load."""
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.setenv(CRASH_TEST_ENV, "chat")
    home = resolve_home(tmp_path / "home")
    client = InferenceClient(home=home)
    try:
        yield client, home
    finally:
        client.close()


def test_a_crash_in_a_reply_under_a_grammar_is_not_taken_for_the_kernels(
        crashing_replies: tuple[InferenceClient, HearthHome], starter_gguf: Path) -> None:
    client, home = crashing_replies
    client.start()
    client.load_blocking(starter_gguf, n_ctx=1024, n_threads=2)
    client.chat(HI, p.SamplingParams(temperature=0, max_tokens=4,
                                     grammar='root ::= "yes" | "no"'))
    events = _events(client)
    assert not any(isinstance(e, p.KernelFallback) for e in events), events
    assert isinstance(events[-1], p.WorkerDied)
    assert KernelMemory(home.kernels_file).safe_record() is None


def test_a_fallback_is_remembered_only_once_the_crashed_reply_works(
        crashing_replies: tuple[InferenceClient, HearthHome], starter_gguf: Path) -> None:
    """The reply is re-sent to the safe kernels, and fails there too (too long for the
    context): the crash was not shown to be the kernels', so nothing is remembered."""
    client, home = crashing_replies
    client.start()
    client.load_blocking(starter_gguf, n_ctx=256, n_threads=2)
    too_long = [{"role": "user", "content": "word " * 2000}]
    request = client.chat(too_long, p.SamplingParams(temperature=0, max_tokens=4))
    events = _events(client)
    assert any(isinstance(e, p.KernelFallback) for e in events), events
    failed = events[-1]
    assert isinstance(failed, p.Error) and failed.request_id == request, failed
    assert client.loaded is not None and not client.loaded.extra_bufts  # safe for now
    assert KernelMemory(home.kernels_file).safe_record() is None  # not for good
