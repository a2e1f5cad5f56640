"""The KV cache type in the load settings: q8_0 is loaded as asked (with flash attention,
which llama.cpp needs for it), answers, and holds the memory the fit estimate says."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import pytest

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.gguf_file import read_gguf
from app.models.memory_fit import SystemMemory, estimate_memory, verdict_for
from app.settings import LoadSettings, Settings, load_settings, save_settings
from app.units import GiB, MiB


def test_the_setting_is_checked_and_kept(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KV cache type"):
        LoadSettings(cache_type="q4_0")
    path = tmp_path / "settings.json"
    save_settings(path, Settings(load=LoadSettings(cache_type="q8_0")))
    assert load_settings(path).load.cache_type == "q8_0"


def test_the_fit_follows_the_cache_type(starter_gguf: Path) -> None:
    info = read_gguf(starter_gguf).summary()
    system = SystemMemory(ram_total=8 * GiB, ram_available=4 * GiB)
    f16 = verdict_for(info, 8192, system=system).estimate
    q8 = verdict_for(info, 8192, system=system, cache_type="q8_0").estimate
    assert q8.kv_cache == pytest.approx(f16.kv_cache * (34 / 32) / 2, rel=1e-6)
    # flash attention comes with q8_0: no attention-scores stage in the compute buffer
    assert q8.compute_reserved == estimate_memory(info, 8192, flash_attn=True
                                                  ).compute_reserved
    assert q8.peak < f16.peak


@pytest.mark.slow
def test_a_q8_0_cache_loads_answers_and_fits_the_estimate(tmp_path: Path,
                                                          starter_gguf: Path) -> None:
    info = read_gguf(starter_gguf).summary()
    rss: dict[str, int] = {}
    for cache_type in ("f16", "q8_0"):
        log = tmp_path / f"worker-{cache_type}.log"
        client = InferenceClient(log_file=log)
        try:
            client.start()
            loaded = client.load_blocking(starter_gguf, n_ctx=8192, n_threads=2,
                                          flash_attn=True, cache_type=cache_type)
            assert loaded.cache_type == cache_type and loaded.flash_attn
            events = list(client.stream_chat([{"role": "user", "content": "Say hi."}],
                                             p.SamplingParams(max_tokens=4, seed=1)))
            assert isinstance(events[-1], p.Done) and events[-1].text
            assert client.proc is not None
            rss[cache_type] = psutil.Process(client.proc.pid).memory_info().rss
        finally:
            client.close()
        kv_line = re.findall(r"K \((\w+)\):.*V \((\w+)\)", log.read_text())
        assert kv_line and kv_line[-1] == (cache_type, cache_type), kv_line
    est = {c: estimate_memory(info, 8192, c, flash_attn=True) for c in rss}
    print({c: (rss[c] // MiB, est[c].typical // MiB) for c in rss})
    assert abs(est["q8_0"].typical - rss["q8_0"]) <= 0.25 * rss["q8_0"]
    saved, predicted = rss["f16"] - rss["q8_0"], est["f16"].typical - est["q8_0"].typical
    assert abs(saved - predicted) <= 0.25 * predicted, (saved, predicted)


def test_an_unknown_cache_type_is_refused_by_the_worker(starter_gguf: Path) -> None:
    client = InferenceClient()
    try:
        client.start()
        with pytest.raises(Exception, match="KV cache type"):
            client.load_blocking(starter_gguf, n_ctx=512, cache_type="q2_k")
        assert client.alive
    finally:
        client.close()
