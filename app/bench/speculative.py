"""``hearth bench speculative``: decode speed with prompt-lookup speculative decoding off
and on, in the same run: the measure behind the Load settings' default (off).
"""

from __future__ import annotations

import statistics
from typing import Any

from app.bench.inference import N_CTX
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.library import ModelRecord
from app.workspace import Workspace

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
