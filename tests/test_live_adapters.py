"""Adapters applied live in the chat worker: no merge, no reload, switched in under a second.

The real worker loads a tiny base once; a LoRA trained on it is written in llama.cpp's
adapter format and applied, removed and applied again, and the logits follow: base +
adapter equals PyTorch's base + adapter, and removing it gives the base's exactly back.
"""

from __future__ import annotations

from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

from app.inference import protocol as p
from backends.export.adapter_gguf import export_adapter
from backends.inference.llama_worker import Worker
from backends.inference.worker_channel import Channel
from backends.training.base_model import load_base
from tests.arch_factory import write_tiny_arch_gguf

TOKENS = [1, 450, 300, 77, 900, 12, 600, 5]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("live")
    base_path = write_tiny_arch_gguf("qwen2", folder / "base.gguf")
    base = load_base(base_path)
    torch.manual_seed(0)
    tuned = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8,
                                                  target_modules="all-linear",
                                                  init_lora_weights=False)).eval()
    with torch.no_grad():
        expected = tuned(input_ids=torch.tensor([TOKENS])).logits[0, -1].numpy()
    adapter = export_adapter(base_path, get_peft_model_state_dict(tuned), 8,
                             folder / "tuned.gguf", "tuned")
    other = write_tiny_arch_gguf("llama", folder / "other.gguf")
    return {"base": base_path, "adapter": adapter, "expected": expected, "other": other}


def _events(conn: Any) -> list[Any]:
    out = []
    while conn.poll(0.2):
        out.append(p.decode(conn.recv_bytes()))
    return out


def _logits(worker: Worker) -> np.ndarray:
    """The next-token logits after TOKENS, as llama.cpp computed them."""
    import llama_cpp

    worker.llm.reset()
    worker.llm.eval(TOKENS)
    row = llama_cpp.llama_get_logits_ith(worker.llm.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(worker.llm.n_vocab(),)).copy()


def test_switching_adapters_on_a_loaded_base(models: dict[str, Any]) -> None:
    ours, theirs = Pipe()
    worker = Worker(Channel(ours))
    worker.load(p.Load(str(models["base"]), n_ctx=128, extra_bufts=False))
    assert isinstance(_events(theirs)[-1], p.Loaded)
    try:
        plain = _logits(worker)
        worker.set_adapter(p.SetAdapter(str(models["adapter"])))
        (done,) = _events(theirs)
        assert isinstance(done, p.AdapterSet) and done.seconds < 1.0
        tuned = _logits(worker)
        assert np.abs(tuned - models["expected"]).max() < 0.05
        assert np.abs(tuned - plain).max() > 0.05

        worker.set_adapter(p.SetAdapter(None))
        assert isinstance(_events(theirs)[-1], p.AdapterSet)
        np.testing.assert_allclose(_logits(worker), plain, atol=1e-5)

        # Applied again: already loaded, so only switched.
        worker.set_adapter(p.SetAdapter(str(models["adapter"])))
        assert _events(theirs)[-1].seconds < 0.5
        worker.chat(p.Chat("r1", [{"role": "user", "content": "hi"}],
                           p.SamplingParams(max_tokens=4, seed=1)))
        done = [e for e in _events(theirs) if isinstance(e, p.Done)][0]
        assert done.stats.adapter == str(models["adapter"])  # the reply says who made it
    finally:
        worker.unload()


def test_an_adapter_of_another_base_is_an_error_not_a_crash(models: dict[str, Any]) -> None:
    adapter = models["adapter"]
    ours, theirs = Pipe()
    worker = Worker(Channel(ours))
    worker.load(p.Load(str(models["other"]), n_ctx=128, extra_bufts=False))
    _events(theirs)
    try:
        worker.set_adapter(p.SetAdapter(str(adapter)))
        (error,) = _events(theirs)
        assert isinstance(error, p.Error) and error.error_kind == "adapter_failed"
        assert "another base model" in error.message
        assert worker.adapters.current == ""
    finally:
        worker.unload()


def test_the_client_applies_an_adapter_and_keeps_it_across_a_kernel_fallback(
        models: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real worker process: a crash of the optimized kernels at the first reply
    restarts it with the safe ones, and the adapter is applied again before the reply."""
    from app.inference.client import InferenceClient
    from app.inference.kernels import OVERRIDE_ENV
    from app.paths import resolve_home
    from backends.inference.llama_compat import CRASH_TEST_ENV

    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.setenv(CRASH_TEST_ENV, "chat")
    client = InferenceClient(home=resolve_home(tmp_path / "home"))
    try:
        client.start()
        client.load(models["base"], n_ctx=128, n_threads=1)
        client.set_adapter(models["adapter"])
        client.chat([{"role": "user", "content": "hi"}], p.SamplingParams(max_tokens=3))
        seen = []
        while not seen or not isinstance(seen[-1], p.Done | p.Error | p.WorkerDied):
            seen.append(client.next_event(120))
        assert isinstance(seen[-1], p.Done), seen
        assert any(isinstance(e, p.KernelFallback) for e in seen)
        assert seen[-1].stats.adapter == str(models["adapter"])
        client.set_adapter(None)
        assert isinstance(client.next_event(30), p.AdapterSet)
    finally:
        client.close()
