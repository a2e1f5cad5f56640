"""``hearth bench inference``, ``hearth bench threads`` and ``hearth bench speculative``
(``hearth bench finetune`` lives in :mod:`app.cli.bench_finetune`).

``bench threads`` measures chat speed with auto, 1 and all-core threads, idle and while
a real fine-tune runs, which is the evidence behind :mod:`app.machine.threads`.

``bench inference``: is the worker path as fast as llama.cpp itself?

Measures decode tokens/s, prefill tokens/s and time to first token through the whole
client -> worker -> stream path and, in the same run, through a direct llama-cpp-python
loop (``backends.inference.bench_direct``, in its own process) on the same model, threads,
prompts and greedy sampling; then the time to first token at turn 1 and turn 10 of one
conversation with equally long user messages, which shows whether the KV cache is
reused between turns. The two paths run one after the other, never at once, so they do
not compete for cores.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.machine.threads import ThreadClaims, auto_threads, default_threads
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
    out = run_module("backends.inference.bench_direct", [
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
        f"model {record.name} ({record.info['quantization']}), {threads} threads, "
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


# ---------------------------------------------------------------------- threads

THREADS_PROMPT = [{"role": "user", "content": "List ten animals, one per line."}]


def _reply_speed(client: InferenceClient, repeats: int) -> dict[str, float]:
    sampling = p.SamplingParams(temperature=0.0, max_tokens=64)
    runs = []
    for i in range(repeats):
        messages = [{"role": "system", "content": f"Run {i}."}, *THREADS_PROMPT]
        done = list(client.stream_chat(messages, sampling))[-1]
        if not isinstance(done, p.Done):
            raise RuntimeError(f"the worker failed: {done.message}")
        runs.append((done.stats.decode_tps, done.stats.ttft_s))
    return {"decode_tps": statistics.median(r[0] for r in runs),
            "ttft_s": statistics.median(r[1] for r in runs)}


def _measure_settings(ws: Workspace, record: ModelRecord, settings: list[int | None],
                      repeats: int) -> dict[str, dict[str, float]]:
    out = {}
    for threads in settings:
        client = InferenceClient(home=ws.home)
        try:
            client.start()
            client.load_blocking(record.path, n_ctx=N_CTX, n_threads=threads)
            label = "auto" if threads is None else str(threads)
            out[label] = _reply_speed(client, repeats)
        finally:
            client.close()
    return out


def _start_training(ws: Workspace, record: ModelRecord) -> Any:
    """A real fine-tune of the same model, long enough to outlast the measurements."""
    import tempfile

    from app.finetune import protocol as tp
    from app.finetune.client import TrainingClient
    from app.finetune.datasets import load_dataset
    from app.finetune.runs.folder import create_run
    from app.finetune.settings import ExportSettings, LoraSettings

    data = Path(tempfile.mkdtemp(prefix="hearth-bench-")) / "load.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for i in range(40):
            f.write(json.dumps({"messages": [
                {"role": "user", "content": f"Tell me fact number {i} about rivers."},
                {"role": "assistant", "content": f"Fact {i}: rivers carry water " * 8}]}) + "\n")
    run_id = create_run(ws.home, record, load_dataset(data),
                        LoraSettings(max_steps=100_000, batch_size=2, max_seq_len=256),
                        ExportSettings(gguf=False))
    started = []
    trainer = TrainingClient(ws.home, run_id,
                             listener=lambda e: started.append(e)
                             if isinstance(e, tp.Progress) else None)
    trainer.start()
    deadline = time.monotonic() + 300
    while not started and time.monotonic() < deadline:
        if not trainer.alive:
            raise RuntimeError("the training run used as load did not start")
        time.sleep(0.2)
    return trainer


def run_threads_bench(ws: Workspace, record: ModelRecord, repeats: int = 2
                      ) -> dict[str, Any]:
    """Decode speed and time to first token with auto, 1 and all-core threads, on an
    idle machine and while a real fine-tune of the same model runs."""
    n = default_threads()
    settings: list[int | None] = [None, 1] + ([n] if n > 1 else [])
    idle = _measure_settings(ws, record, settings, repeats)
    trainer = _start_training(ws, record)
    try:
        auto_busy = auto_threads(ThreadClaims(ws.home.busy))
        busy = _measure_settings(ws, record, settings, repeats)
    finally:
        trainer.kill()
    summary = [f"model {record.name}, {n} physical cores, decode of 64 tokens, median of "
               f"{repeats}; auto picks {n} idle, {auto_busy} while training",
               f"{'threads':>8} {'idle tok/s':>11} {'idle TTFT':>10} "
               f"{'training tok/s':>15} {'training TTFT':>14}"]
    for label in idle:
        summary.append(f"{label:>8} {idle[label]['decode_tps']:11.1f} "
                       f"{idle[label]['ttft_s'] * 1000:8.0f}ms "
                       f"{busy[label]['decode_tps']:15.1f} {busy[label]['ttft_s'] * 1000:12.0f}ms")
    return {"model": record.name, "physical_cores": n, "idle": idle, "training": busy,
            "auto_threads_after": auto_busy, "summary": summary}


# ------------------------------------------------------- speculative decoding

REPEAT_TEXT = ("Alice met Bob at the old station at noon. They shared a pot of coffee, "
               "talked about trains, rivers and the maps of the city their grandparents "
               "drew, and agreed to meet again on Sunday by the clock tower.")
SPECULATIVE_TASKS = {
    "repeat": [{"role": "user", "content": f"Repeat this text exactly:\n\n{REPEAT_TEXT}"}],
    "chat": [{"role": "user", "content": "Write a short story about a cat who learns to "
              "sail."}],
}


def run_speculative_bench(ws: Workspace, record: ModelRecord, tokens: int = 64,
                          draft: int = 10, repeats: int = 2) -> dict[str, Any]:
    """Decode tokens/s with prompt lookup off and on, in the same run, on a task that
    repeats its input and on plain chat.

    Both workers stay loaded and the requests alternate between them, so a busy machine
    slows both alike; greedy sampling, so both must give the same text (checked).
    """
    load = ws.settings.load
    clients = {}
    try:
        for name, n in (("off", 0), ("on", draft)):
            clients[name] = InferenceClient(home=ws.home)
            clients[name].start()
            clients[name].load_blocking(record.path, n_ctx=N_CTX, n_threads=load.n_threads,
                                        prompt_lookup=n)
        sampling = p.SamplingParams(temperature=0.0, max_tokens=tokens)
        speeds: dict[str, dict[str, list[float]]] = {t: {"off": [], "on": []}
                                                     for t in SPECULATIVE_TASKS}
        texts: dict[str, dict[str, str]] = {t: {} for t in SPECULATIVE_TASKS}
        for _ in range(repeats):
            for task, messages in SPECULATIVE_TASKS.items():
                for name, client in clients.items():
                    done = list(client.stream_chat(messages, sampling))[-1]
                    if not isinstance(done, p.Done):
                        raise RuntimeError(f"the benchmark reply failed: {done.message}")
                    speeds[task][name].append(done.stats.decode_tps)
                    texts[task][name] = done.text
    finally:
        for client in clients.values():
            client.close()
    result: dict[str, Any] = {"model": record.name, "draft_tokens": draft,
                              "decode_tokens": tokens, "tasks": {}, "summary": []}
    for task in SPECULATIVE_TASKS:
        off = statistics.median(speeds[task]["off"])
        on = statistics.median(speeds[task]["on"])
        same = texts[task]["off"] == texts[task]["on"]
        result["tasks"][task] = {"off_tps": off, "on_tps": on,
                                 "ratio": round(on / off, 2) if off else None,
                                 "same_text": same}
        result["summary"].append(f"{task:7} off {off:7.1f} tok/s  on {on:7.1f} tok/s  "
                                 f"x{on / off if off else 0:.2f}  same text: {same}")
    return result
