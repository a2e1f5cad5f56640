"""``hearth bench threads``: chat speed with auto, 1 and all-core threads, idle and while a
real fine-tune of the same model runs: the evidence behind :mod:`app.machine.threads`.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from app.bench.inference import N_CTX
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.machine.threads import ThreadClaims, auto_threads, default_threads
from app.models.library import ModelRecord
from app.workspace import Workspace

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
