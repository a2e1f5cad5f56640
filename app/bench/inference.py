"""``hearth bench inference``: is the worker path as fast as llama.cpp itself?

Measures decode tokens/s, prefill tokens/s and time to first token through the whole
client -> worker -> stream path and, in the same run, through a direct llama-cpp-python
loop (:mod:`backends.bench.inference_baseline`, in its own process) on the same model,
threads, prompts and greedy sampling; then the time to first token at turn 1 and turn 10
of one conversation with equally long user messages, which shows whether the KV cache is
reused between turns. The two paths run one after the other, never at once, so they do
not compete for cores.
"""

from __future__ import annotations

import json
import platform
import statistics
from typing import Any

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.machine.threads import default_threads
from app.models.library import ModelRecord
from app.workers.spawn import run_module
from app.workspace import Workspace

PROMPT = "Count from 1 to 300, separated by commas."
N_CTX = 2048


def _conversations(repeats: int) -> list[list[dict[str, str]]]:
    # A different first word per run keeps the worker from reusing the previous run's
    # KV cache, so both paths pay the full prefill every time.
    return [[{"role": "system", "content": f"Run {i}. You are a precise assistant."},
             {"role": "user", "content": PROMPT}] for i in range(repeats)]


def _direct(record: ModelRecord, threads: int, tokens: int, repeats: int, extra_bufts: bool
            ) -> dict[str, float]:
    out = run_module("backends.bench.inference_baseline", [
        "--model", str(record.path), "--threads", str(threads), "--n-ctx", str(N_CTX),
        "--tokens", str(tokens), "--extra-bufts", "1" if extra_bufts else "0",
        "--conversations", json.dumps(_conversations(repeats))])
    if out.returncode != 0:
        raise RuntimeError(f"the direct baseline failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _path(client: InferenceClient, tokens: int, repeats: int) -> dict[str, float]:
    sampling = p.SamplingParams(temperature=0.0, max_tokens=tokens)
    runs = []
    for messages in _conversations(repeats):
        done = list(client.stream_chat(messages, sampling))[-1]
        if not isinstance(done, p.Done):
            raise RuntimeError(f"the worker failed: {done.message}")
        s = done.stats
        runs.append({"ttft_s": s.ttft_s, "prefill_tps": s.prefill_tps,
                     "decode_tps": s.decode_tps, "completion_tokens": s.completion_tokens,
                     "prompt_tokens": s.prompt_tokens})
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _turns(client: InferenceClient, turns: int = 10) -> list[float]:
    """TTFT per turn of one conversation whose user messages are equally long."""
    sampling = p.SamplingParams(temperature=0.0, max_tokens=48)
    messages: list[dict[str, str]] = [{"role": "system", "content": "Be brief."}]
    ttfts = []
    for i in range(turns):
        messages.append({"role": "user",
                         "content": f"Question {i:02d}: tell me one short fact about the "
                                    f"number {i + 10}, and one about the colour blue."})
        done = list(client.stream_chat(messages, sampling))[-1]
        if not isinstance(done, p.Done):
            raise RuntimeError(f"the worker failed: {done.message}")
        ttfts.append(done.stats.ttft_s)
        messages.append({"role": "assistant", "content": done.text})
    return ttfts


def run_inference_bench(ws: Workspace, record: ModelRecord, decode_tokens: int = 128,
                        threads: int | None = None, repeats: int = 3) -> dict[str, Any]:
    from_settings = ws.settings.load.n_threads
    threads = threads or from_settings or default_threads()
    client = InferenceClient(log_file=ws.home.logs / "inference-worker.log", home=ws.home)
    try:
        client.start()
        # The path first: if the optimized kernels crash while loading, the client
        # falls back, and the baseline then runs with the same (safe) kernels.
        loaded = client.load_blocking(record.path, n_ctx=N_CTX, n_threads=threads)
        path = _path(client, decode_tokens, repeats)
        ttfts = _turns(client)
    finally:
        client.close()
    direct = _direct(record, threads, decode_tokens, repeats, loaded.extra_bufts)
    ratios = {
        "decode_tps": path["decode_tps"] / direct["decode_tps"],
        "prefill_tps": path["prefill_tps"] / direct["prefill_tps"],
        "ttft_s": path["ttft_s"] / direct["ttft_s"],
    }
    turn_ratio = ttfts[-1] / ttfts[0]
    summary = [
        f"model {record.name} ({record.info.quantization}), {threads} threads, "
        f"n_ctx {N_CTX}, {decode_tokens} tokens, median of {repeats}, "
        f"{platform.machine()} {platform.system()}",
        f"{'':14}{'path':>10}{'direct':>10}{'path/direct':>13}",
        *(f"{key:14}{path[key]:10.4g}{direct[key]:10.4g}{ratios[key]:13.3f}"
          for key in ("decode_tps", "prefill_tps", "ttft_s")),
        f"TTFT turn 1 {ttfts[0] * 1000:.1f} ms, turn 10 {ttfts[-1] * 1000:.1f} ms: "
        f"turn10/turn1 = {turn_ratio:.2f} (target <= 1.5)",
        f"decode path/direct = {ratios['decode_tps']:.3f} (target >= 0.95)",
    ]
    return {"model": record.name, "threads": threads, "n_ctx": N_CTX,
            "decode_tokens": decode_tokens, "repeats": repeats, "path": path,
            "direct": direct, "ratios": ratios, "ttft_by_turn_s": ttfts,
            "turn10_over_turn1": turn_ratio, "summary": summary}
