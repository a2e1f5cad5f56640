"""Quantizing an exported GGUF and checking it with llama.cpp, in its own process.

``python -m backends.export.gguf_check JOB.json`` reads a job written by the training
worker and writes its result where the job says (:mod:`app.finetune.export_check`). It
runs apart from the training worker because llama.cpp may abort its whole process on a
bad file: an abort here costs the export check, never the trained adapter.

The check has two parts:

(a) the **unquantized** merged F16 GGUF's next-token logits, computed by llama.cpp, are
    compared with the PyTorch (PEFT) model's logits on the same validation tokens: the
    largest absolute difference and the top-1 agreement. This proves the export (names,
    Q/K permutation, tied embeddings, metadata) is right.
(b) the validation loss of the **quantized** GGUF through llama.cpp, over the same
    target tokens as the PyTorch validation loss, so the cost of quantization shows.

A **live** job (one with an ``adapter_path``) checks a GGUF adapter instead: the base GGUF
with the adapter applied by llama.cpp, for both parts, with nothing merged or quantized.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from app.finetune.export_check import CheckJob, CheckMeasures, CheckResult
from app.workers.answer import write_answer

QUANT_FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                "f16": "LLAMA_FTYPE_MOSTLY_F16"}


def quantize(src: Path, dst: Path, quant: str, threads: int) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[quant])
    params.nthread = threads
    partial = dst.with_name(dst.name + ".part")
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(),
                                          ctypes.byref(params))
    if code != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp's quantizer failed (code {code})")
    os.replace(partial, dst)


def _logits(model_path: Path, samples: list[list[int]], threads: int, extra_bufts: bool,
            adapter: Path | None = None) -> list[np.ndarray]:
    from backends.inference import llama_compat as compat

    n_ctx = max(len(s) for s in samples) + 8
    llm = compat.open_model(str(model_path), n_ctx=max(64, n_ctx), n_threads=threads,
                            extra_bufts=extra_bufts, n_batch=512, n_ubatch=512,
                            logits_all=True)
    out = []
    try:
        if adapter is not None:
            compat.use_adapter(llm, compat.load_adapter(llm, str(adapter)))
        for ids in samples:
            llm.reset()
            llm.eval(ids)
            out.append(np.array(llm.scores[:len(ids)], dtype=np.float32))
    finally:
        llm.close()
    return out


def _loss(logits: list[np.ndarray], predict_at: list[list[int]], targets: list[list[int]]
          ) -> float:
    total, count = 0.0, 0
    for rows, at, tgt in zip(logits, predict_at, targets, strict=True):
        if not at:
            continue
        x = rows[at].astype(np.float64)
        x = x - x.max(axis=1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        total -= float(logp[np.arange(len(tgt)), tgt].sum())
        count += len(tgt)
    return total / max(1, count)


def run(job: CheckJob) -> CheckResult:
    threads = job.threads or os.cpu_count() or 1
    started = time.perf_counter()
    if job.live:
        base, adapter = Path(job.base_path), Path(job.adapter_path)
        measures = _compare(job, base, base, threads, adapter)
        return CheckResult(path=str(adapter), size_bytes=adapter.stat().st_size,
                           check_s=round(time.perf_counter() - started, 2),
                           measures=measures)
    f16, out = Path(job.f16_path), Path(job.out_path)
    if job.quant == "f16":
        if out != f16:
            if f16.exists():  # a re-run after a kernel crash finds it moved already
                os.replace(f16, out)
            f16 = out
    else:
        quantize(f16, out, job.quant, threads)
    quant_s = time.perf_counter() - started
    measures = _compare(job, f16, out, threads)
    if out != f16:
        f16.unlink(missing_ok=True)
    return CheckResult(path=str(out), size_bytes=out.stat().st_size,
                       quantize_s=round(quant_s, 2),
                       check_s=round(time.perf_counter() - started - quant_s, 2),
                       measures=measures)


def _compare(job: CheckJob, exact: Path, quantized: Path, threads: int,
             adapter: Path | None = None) -> CheckMeasures:
    """Part (a) on ``exact`` and part (b) on ``quantized`` (with ``adapter`` applied)."""
    from safetensors.numpy import load_file

    samples, val = job.reference.samples, job.validation
    reference = load_file(job.reference.reference_logits)
    bufts = job.extra_bufts
    if exact == quantized:  # a live adapter: one load of the base serves both parts
        both = _logits(exact, samples + val.samples, threads, bufts, adapter)
        cpp, quant_logits = both[:len(samples)], both[len(samples):]
    else:
        cpp = _logits(exact, samples, threads, bufts, adapter)
        quant_logits = _logits(quantized, val.samples, threads, bufts, adapter)
    max_diff, agree, total = _agreement(cpp, reference, "sample")
    measures = CheckMeasures(
        logits_max_abs_diff=round(max_diff, 5),
        logits_ref_max_abs=round(max(float(np.abs(reference[f"sample{i}"]).max())
                                     for i in range(len(samples))), 3),
        top1_agreement=round(agree / max(1, total), 5), tokens_compared=total,
        gguf_val_loss=round(_loss(quant_logits, val.predict_at, val.targets), 5))
    if adapter is not None and "base0" in reference:  # the quantized base alone
        base_diff, base_agree, _ = _agreement(_logits(exact, samples, threads, bufts),
                                              reference, "base")
        measures.base_logits_max_abs_diff = round(base_diff, 5)
        measures.base_top1_agreement = round(base_agree / max(1, total), 5)
        # A pick PyTorch ranks within the base's own noise of its top token is a tie.
        _, near, _ = _agreement(cpp, reference, "sample", tie=base_diff)
        measures.top1_within_base_noise = round(near / max(1, total), 5)
    return measures


def _agreement(cpp: list[np.ndarray], reference: dict[str, np.ndarray], prefix: str,
               tie: float = 0.0) -> tuple[float, int, int]:
    """Largest logit difference, top-1 agreements and tokens compared. With ``tie``,
    llama.cpp's pick agrees when PyTorch scores it within ``tie`` of its own top."""
    max_diff, agree, total = 0.0, 0, 0
    for i, rows in enumerate(cpp):
        ref = reference[f"{prefix}{i}"]
        max_diff = max(max_diff, float(np.abs(rows - ref).max()))
        picked = np.take_along_axis(ref, rows.argmax(-1)[:, None], axis=-1)[:, 0]
        agree += int((picked >= ref.max(-1) - tie).sum()) if tie else int(
            (rows.argmax(-1) == ref.argmax(-1)).sum())
        total += len(rows)
    return max_diff, agree, total


def main() -> None:
    job = CheckJob.read(Path(sys.argv[1]))
    try:
        result = run(job)
    except Exception as exc:  # reported to the parent as a failed check
        write_answer(Path(job.result_path), CheckResult(error=f"{type(exc).__name__}: {exc}"))
        sys.exit(1)
    write_answer(Path(job.result_path), result)


if __name__ == "__main__":
    main()
