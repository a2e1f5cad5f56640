"""Offline, a hub search says so within 3 s, and HF_HUB_OFFLINE keeps Hearth off the
network (issue 15: it said "Searching…" for 20-25 s before failing)."""

from __future__ import annotations

import socket
import time

import pytest

from app.models.hub import HubClient, HubError
from tests.hub_server import FakeHub, fake_hub  # noqa: F401 - pytest fixture


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", [
    "http://hearth-offline-test.invalid",     # no such name: what offline DNS answers
    "http://127.0.0.1:{port}",                # nothing listening
])
def test_an_unreachable_hub_fails_within_3_s_and_says_offline(
        endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    client = HubClient(endpoint.format(port=_closed_port()))
    for ask in (lambda: client.search("qwen"), lambda: client.list_files("a/b")):
        started = time.monotonic()
        with pytest.raises(HubError, match="offline") as error:
            ask()
        assert time.monotonic() - started < 3.0
        assert "check the connection" in str(error.value)


def test_hf_hub_offline_is_respected(fake_hub: FakeHub,  # noqa: F811
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        HubClient().search("gguf")
    assert fake_hub.requests == []  # not one request left the machine
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert HubClient().search("gguf") == []  # an empty hub, asked
    assert fake_hub.requests
