"""Prompt-lookup speculative decoding changes the speed, not the model: with greedy
sampling the real worker gives the same short replies with it on as off, on a task that
copies its input (where drafts are accepted) and on plain chat (where they mostly are
not). Longer replies may part at a near tie: batched evaluation rounds differently."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bench.speculative import SPECULATIVE_TASKS
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.settings import LoadSettings

pytestmark = pytest.mark.slow


def test_the_setting_is_checked() -> None:
    assert LoadSettings().prompt_lookup == 0  # off unless measured to win
    with pytest.raises(ValueError, match="prompt lookup"):
        LoadSettings(prompt_lookup=-1)


def test_prompt_lookup_gives_the_same_greedy_reply(starter_gguf: Path) -> None:
    sampling = p.SamplingParams(temperature=0.0, max_tokens=24)
    texts: dict[int, list[str]] = {}
    for draft in (0, 8):
        client = InferenceClient()
        try:
            client.start()
            loaded = client.load_blocking(starter_gguf, n_ctx=1024, n_threads=2,
                                          prompt_lookup=draft)
            assert loaded.prompt_lookup == draft
            texts[draft] = []
            for messages in SPECULATIVE_TASKS.values():
                done = list(client.stream_chat(messages, sampling))[-1]
                assert isinstance(done, p.Done) and done.stats.completion_tokens > 0
                texts[draft].append(done.text)
            # a second turn reuses the KV cache, drafts included, and still agrees
            again = list(client.stream_chat(SPECULATIVE_TASKS["repeat"], sampling))[-1]
            assert isinstance(again, p.Done) and again.text == texts[draft][0]
        finally:
            client.close()
    assert texts[8] == texts[0]
    assert "Alice met Bob" in texts[0][0]  # the task really copies its input
