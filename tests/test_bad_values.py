"""Values the worker does not expect (review 2026-12-07, S2): each is refused at the edge
with the field named, and whatever still reaches the worker ends that one request with
an error while the worker goes on. Through the real server, worker and starter model."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.chat.template import ChatTemplate, ChatTemplateError
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.serve.models import OwnModels
from app.serve.security import KEY_ENV, api_key
from app.serve.server import LocalServer
from app.settings import load_settings
from app.workspace import Workspace, open_workspace

MODEL = "SmolLM2-135M-Instruct"
HI = [{"role": "user", "content": "Say hello to Ada."}]
DIVIDES_BY_ZERO = "{% for m in messages %}{{ m['content'] }}{% endfor %}{{ 1/0 }}"


class Served:
    def __init__(self, ws: Workspace, server: LocalServer, client: InferenceClient,
                 key: str) -> None:
        self.ws, self.server, self.client, self.key = ws, server, client, key

    def post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
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
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)
        ws = open_workspace(tmp_path_factory.mktemp("bad-values-home"))
        ws.settings.load.n_ctx, ws.settings.load.n_threads = 1024, 2
        client = InferenceClient(home=ws.home)
        host = OwnModels(ws, client)
        host.ready(MODEL)
        server = LocalServer(host, api_key(ws.home.root), port=0)
        server.start()
        try:
            yield Served(ws, server, client, api_key(ws.home.root))
        finally:
            server.stop()
            client.close()
            ws.close()


def _until_end(client: InferenceClient, request_id: str, timeout: float = 300) -> Any:
    """The event that ends ``request_id``'s reply (or the worker)."""
    deadline = time.monotonic() + timeout
    while True:
        event = client.next_event(max(0.0, deadline - time.monotonic()))
        if isinstance(event, p.WorkerDied) or (
                isinstance(event, p.Done | p.Error) and event.request_id == request_id):
            return event


# ---------------------------------------------------------------- at the edge


@pytest.mark.parametrize(("fields", "named"), [
    ({"seed": "abc"}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"),
    ({"top_k": 1.5}, "top_k"), ({"temperature": "hot"}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"top_p": [1]}, "top_p"),
    ({"max_tokens": "8"}, "max_tokens"), ({"stop": "x"}, "stop"), ({"grammar": 5}, "grammar")])
def test_sampling_params_refuse_wrong_types_by_name(fields: dict[str, Any], named: str
                                                    ) -> None:
    with pytest.raises(ValueError, match=named):
        p.SamplingParams(**{"temperature": 0.7, **fields})


def test_a_template_that_raises_anything_raises_chat_template_error() -> None:
    for source in (DIVIDES_BY_ZERO, "{{ messages[0]['content'] + 1 }}"):
        with pytest.raises(ChatTemplateError, match="Error"):
            ChatTemplate("gguf", source).render(HI)


@pytest.mark.slow
def test_wrong_typed_fields_get_a_400_that_names_them_and_the_worker_lives(
        served: Served) -> None:
    pid = served.client.proc.pid
    for field, value in (("seed", "abc"), ("seed", 1.5), ("top_k", 1.5),
                         ("temperature", "hot"), ("max_tokens", "8"), ("stream", "yes")):
        status, body = served.post({"model": MODEL, "messages": HI, "max_tokens": 4,
                                    "temperature": 0.7, field: value})
        assert status == 400, (field, value, body)
        assert field in body["error"]["message"], body
    assert served.client.proc.pid == pid and served.client.alive
    status, body = served.post({"model": MODEL, "messages": HI, "max_tokens": 4,
                                "temperature": 0.7, "seed": 3})
    assert status == 200 and body["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_a_wrong_typed_remembered_setting_does_not_stop_the_worker(served: Served,
                                                                   tmp_path: Path) -> None:
    """A settings.json edited by hand: the wrong-typed sampling is refused as the settings
    are read (the file kept aside, the person told), so the worker never sees it."""
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"sampling_by_model": {
        MODEL: {"seed": "x", "top_k": 2.5, "temperature": 0.7}}}))
    notices: list[str] = []
    settings = load_settings(path, notices)
    assert len(notices) == 1 and settings.sampling_for(MODEL) == p.SamplingParams()
    pid, kept = served.client.proc.pid, served.ws.settings
    served.ws.settings = settings
    try:
        status, body = served.post({"model": MODEL, "messages": HI, "max_tokens": 4})
    finally:
        served.ws.settings = kept
    assert status == 200, body
    assert served.client.proc.pid == pid


@pytest.mark.slow
def test_any_error_in_one_request_is_answered_and_the_worker_goes_on(
        served: Served) -> None:
    """Past the edge: a command the worker cannot run (a wrong type that skipped the
    client's check) gets an Error with its request id, and the next reply comes."""
    client, pid = served.client, served.client.proc.pid
    sneaked = p.SamplingParams(temperature=0.7)
    sneaked.seed = "abc"  # type: ignore[assignment] - as a bug or an old client might
    client.worker.send(p.Chat("bad-seed", HI, sneaked))
    refused = _until_end(client, "bad-seed")
    assert isinstance(refused, p.Error) and refused.error_kind == "bad_request", refused
    assert "seed" in refused.message
    client.worker.send(p.Chat("bad-threads", HI, p.SamplingParams(temperature=0),
                              n_threads="two"))  # type: ignore[arg-type]
    failed = _until_end(client, "bad-threads")
    assert isinstance(failed, p.Error) and failed.error_kind == "internal", failed
    assert "goes on" in failed.message
    events = list(client.stream_chat(HI, p.SamplingParams(temperature=0, max_tokens=4)))
    assert isinstance(events[-1], p.Done) and events[-1].text
    assert client.proc.pid == pid


@pytest.mark.slow
def test_a_template_that_divides_by_zero_fails_the_reply_not_the_worker(
        tmp_path: Path) -> None:
    from tests.tiny_model import write_tiny_llama

    model = write_tiny_llama(tmp_path / "divzero.gguf", chat_template=DIVIDES_BY_ZERO)
    client = InferenceClient()
    try:
        client.start()
        client.load_blocking(model, n_ctx=256, n_threads=2)
        pid = client.proc.pid
        events = list(client.stream_chat(HI, p.SamplingParams(temperature=0, max_tokens=2)))
        failed = events[-1]
        assert isinstance(failed, p.Error) and failed.error_kind == "bad_request", failed
        assert "ZeroDivisionError" in failed.message
        request = client.chat(HI, p.SamplingParams(temperature=0, max_tokens=2), raw=True)
        done = _until_end(client, request)
        assert isinstance(done, p.Done) and client.proc.pid == pid
    finally:
        client.close()
