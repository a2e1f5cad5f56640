"""Offline, a hub search says so at once, and HF_HUB_OFFLINE keeps Hearth off the
network (issue 15: it said "Searching…" for 20-25 s before failing, the time
huggingface_hub's retries take). "At once" is checked by what answered: the reach check
(``app.models.hub.check_reachable``, "offline: cannot reach …"), which waits at most
3 s and runs before huggingface_hub is asked anything, not a stopwatch."""

from __future__ import annotations

import socket

import pytest

from app.models.hub import HubClient, HubError
from tests.hub_server import FakeHub


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", [
    "http://hearth-offline-test.invalid",     # no such name: what offline DNS answers
    "http://127.0.0.1:{port}",                # nothing listening
])
def test_an_unreachable_hub_is_said_offline_before_any_request(
        endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    url = endpoint.format(port=_closed_port())
    client = HubClient(url)
    for ask in (lambda: client.search("qwen"), lambda: client.list_files("a/b")):
        with pytest.raises(HubError) as error:
            ask()
        assert str(error.value).startswith(f"offline: cannot reach the Hugging Face hub at {url} (")
        assert "check the connection" in str(error.value)


def test_hf_hub_offline_is_respected(fake_hub: FakeHub,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        HubClient().search("gguf")
    assert fake_hub.requests == []  # not one request left the machine
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert HubClient().search("gguf") == []  # an empty hub, asked
    assert fake_hub.requests


def test_the_hub_view_says_offline_and_offers_to_try_again(
        qtbot, workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.models.hub_view import HubView

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    view = HubView(workspace, lambda: HubClient(endpoint))
    qtbot.addWidget(view)
    try:
        view.search("qwen")
        assert view.status.text() == "Searching for 'qwen'…"
        qtbot.waitUntil(lambda: view.status.error, timeout=5000)
        assert view.status.text().startswith("offline: cannot reach")  # the reach check's
        assert view.status.action_button.text() == "Try again"
        assert not view.status.action_button.isHidden()
        view.status.action_button.click()
        assert view.status.text() == "Searching for 'qwen'…"  # asked again
        qtbot.waitUntil(lambda: view.status.error, timeout=5000)
    finally:
        view.shutdown()
