"""What a fine-tune of a 1B-class model costs on this machine, through Hearth's own path.

    python -m tests.benchmarks.bench_1b [--steps 6] [--records 48] [--quant q4_k_m]

A random Llama of Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads, 8 KV heads,
FFN 8192; SmolLM2's 49k vocabulary, so about 1.0B parameters) is written as an F16 GGUF,
imported into a fresh Hearth home, and fine-tuned with ``hearth finetune`` exactly as a
person would run it: conversion, training, merge, F16 export, quantization and the
llama.cpp check. Random weights cost the same time and memory as trained ones. The
baseline each figure is printed against is Hearth's own up-front estimate for the run,
made before it started: the ratio says how far the person's estimate was off.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np

from backends.bench.finetune import make_dataset
from tests.tiny_model import llama_writer

ROOT = Path(__file__).resolve().parents[2]


def write_llama(path: Path, hidden: int, layers: int, heads: int, kv_heads: int, ffn: int
                ) -> int:
    """Write a random F16 llama GGUF with the starter's vocabulary; returns parameters."""
    writer, vocab = llama_writer(path, "random-llama-1b", hidden, layers, heads, kv_heads, ffn,
                                 gguf.LlamaFileType.MOSTLY_F16, context=4096,
                                 rope_base=500000.0)
    rng = np.random.default_rng(0)
    count = 0

    def add(name: str, *shape: int, scale: float = 0.02, norm: bool = False) -> None:
        nonlocal count
        count += int(np.prod(shape))
        if norm:
            writer.add_tensor(name, np.ones(shape, dtype=np.float32))
        else:
            data = rng.standard_normal(shape, dtype=np.float32) * scale
            writer.add_tensor(name, data.astype(np.float16))

    kv = kv_heads * (hidden // heads)
    add("token_embd.weight", vocab, hidden)
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", hidden, norm=True)
        add(f"blk.{i}.attn_q.weight", hidden, hidden)
        add(f"blk.{i}.attn_k.weight", kv, hidden)
        add(f"blk.{i}.attn_v.weight", kv, hidden)
        add(f"blk.{i}.attn_output.weight", hidden, hidden)
        add(f"blk.{i}.ffn_norm.weight", hidden, norm=True)
        add(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        add(f"blk.{i}.ffn_up.weight", ffn, hidden)
        add(f"blk.{i}.ffn_down.weight", hidden, ffn)
    add("output_norm.weight", hidden, norm=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


def _hearth(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HEARTH_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ui.entry", *args], capture_output=True,
                          text=True, env=env, cwd=str(ROOT), check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_1b")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--records", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument("--quant", default="q4_k_m")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=8192)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hearth-bench-1b-") as tmp:
        tmp_path = Path(tmp)
        model = tmp_path / "random-llama-1b.gguf"
        started = time.perf_counter()
        params = write_llama(model, args.hidden, args.layers, args.heads, args.kv_heads,
                             args.ffn)
        write_s = time.perf_counter() - started
        data = tmp_path / "data.jsonl"
        data.write_text("\n".join(json.dumps(r) for r in make_dataset(args.records)) + "\n")
        home = tmp_path / "home"
        imp = _hearth(home, "models", "import", str(model), "--name", "llama-1b")
        if imp.returncode:
            sys.exit(f"import failed: {imp.stderr[-2000:]}")
        model.unlink()  # the home holds its own copy
        started = time.perf_counter()
        run = _hearth(home, "finetune", "-m", "llama-1b", "--data", str(data),
                      "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
                      "--max-seq-len", str(args.max_seq_len), "--quant", args.quant,
                      "--json")
        wall = time.perf_counter() - started
        lines = [ln for ln in run.stdout.splitlines() if ln.strip()]
        try:
            summary = json.loads(run.stdout[run.stdout.index("{"):])
        except ValueError:
            sys.exit(f"the fine-tune failed ({run.returncode}):\n{run.stderr[-3000:]}\n"
                     + "\n".join(lines[-20:]))
    estimate = summary.get("estimate", {})
    result = {
        "parameters": params, "write_gguf_s": round(write_s, 1), "wall_s": round(wall, 1),
        "steps": summary.get("steps"), "trained_tokens": summary.get("trained_tokens"),
        "train_s": summary.get("train_seconds"), "tokens_per_s": summary.get("tokens_per_s"),
        "peak_memory_gib": round((summary.get("peak_memory_bytes") or 0) / 2**30, 2),
        "estimate_s": estimate.get("seconds"),
        "estimate_memory_gib": round((estimate.get("peak_memory_bytes") or 0) / 2**30, 2),
        "phase_seconds": summary.get("phase_seconds"), "dtype": summary.get("dtype"),
        "gguf_size_gib": round((summary.get("gguf_size_bytes") or 0) / 2**30, 2),
        "fidelity": summary.get("fidelity"),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"1B-class fine-tune ({params / 1e9:.2f}B parameters, {args.steps} steps of "
          f"{args.batch_size} x <= {args.max_seq_len} tokens, export {args.quant})")
    print(f"  wall time of 'hearth finetune'  {wall:8.1f} s   (Hearth's estimate "
          f"{result['estimate_s']} s, actual/estimate "
          f"{wall / max(1e-9, result['estimate_s'] or 1e-9):.2f})")
    print(f"  training                        {result['train_s']} s at "
          f"{result['tokens_per_s']} tokens/s ({result['trained_tokens']} tokens)")
    print(f"  peak memory                     {result['peak_memory_gib']} GiB (estimate "
          f"{result['estimate_memory_gib']} GiB)")
    print(f"  phases                          {result['phase_seconds']}")
    print(f"  exported GGUF                   {result['gguf_size_gib']} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
