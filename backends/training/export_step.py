"""After training: merge the adapter, export GGUF, quantize, and check it in llama.cpp.

The check runs in a further child process (``python -m backends.export.gguf_check``),
with the kernel fallback of :mod:`app.inference.kernels`: llama.cpp can crash on some
CPUs, and a crash there must become a reason in the run, not a dead worker. The
numbers (logit differences, top-1 agreement, validation loss before and after) go into
the run's :class:`app.finetune.runs.records.Fidelity`, with a warning for each promise
the exported file does not keep.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from app.finetune import protocol as tp
from app.finetune.export_check import (
    CheckJob,
    CheckMeasures,
    CheckResult,
    ReferenceSamples,
    ValidationSamples,
)
from app.finetune.fidelity import FidelityThresholds, failures
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import Fidelity, RunSpec, RunSummary
from app.inference.kernels import KernelMemory, run_with_fallback
from app.machine.profile import Machine
from app.workers.answer import read_answer
from app.workers.spawn import run_module

Emit = Callable[[Any], None]
FIDELITY_MAX_TOKENS = 256
VAL_CHECK_MAX_RECORDS = 64


def base_weights(peft_model: Any) -> dict[str, torch.Tensor]:
    """The frozen base weights under their plain transformers names."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in peft_model.get_base_model().state_dict().items():
        if "lora_" in name:
            continue
        out[name.replace(".base_layer.", ".")] = tensor
    return out


def reference_logits(peft_model: Any, samples: list[list[int]], device: torch.device
                     ) -> dict[str, torch.Tensor]:
    peft_model.eval()
    out = {}
    with torch.no_grad():
        for i, ids in enumerate(samples):
            logits = peft_model(input_ids=torch.tensor([ids], device=device)).logits[0]
            out[f"sample{i}"] = logits.float().cpu().contiguous()
    return out


def write_live_adapter(peft_model: Any, base_gguf: Path | None, alpha: float,
                           adapter_dir: Path, emit: Emit) -> Path | None:
    """The adapter in llama.cpp's GGUF format, beside the PEFT one, for chat to apply live.

    Only a GGUF base has the tensor names it needs; a failure costs the live adapter,
    never the run.
    """
    if base_gguf is None:
        return None
    from peft import get_peft_model_state_dict

    from backends.export.adapter_gguf import export_adapter
    from backends.export.gguf_export import ExportError

    state = {f"base_model.model.{k.removeprefix('base_model.model.')}":
             v.detach().float().cpu() for k, v in get_peft_model_state_dict(peft_model).items()}
    try:
        return export_adapter(base_gguf, state, alpha, adapter_dir / "adapter.gguf",
                              adapter_dir.name)
    except (ExportError, OSError, ValueError) as exc:
        emit(tp.Log("warning", f"the adapter could not be written for llama.cpp: {exc}"))
        return None


def merge_and_write_f16(spec: RunSpec, peft_model: Any, base: Any, emit: Emit) -> Path:
    """Merge the adapter into the base weights and write them as an F16 GGUF."""
    from peft import get_peft_model_state_dict

    from backends.export.gguf_export import export_gguf
    from backends.export.merge import merge_lora

    settings = spec.settings
    emit(tp.Phase("merging", "merging the adapter into the weights"))
    adapter_state = {k: v.detach().float().cpu()
                     for k, v in get_peft_model_state_dict(peft_model).items()}
    adapter_state = {f"base_model.model.{k.removeprefix('base_model.model.')}": v
                     for k, v in adapter_state.items()}
    merged = merge_lora({k: v.detach().float().cpu() for k, v in
                         base_weights(peft_model).items()},
                        adapter_state, settings.alpha, settings.rank)
    emit(tp.Phase("exporting", "writing the merged model as GGUF (F16)"))
    f16_path = spec.gguf_f16
    export_gguf(base.gguf_path, merged, f16_path, spec.out_name,
                chat_template=None if base.template.source == "gguf" else base.template.text)
    del merged
    emit(tp.Exported("gguf_f16", str(f16_path), f16_path.stat().st_size))
    return f16_path


def export_and_check(folder: RunFolder, spec: RunSpec, peft_model: Any, base: Any,
                     trainer: Any, val: Any, device: torch.device, summary: RunSummary,
                     emit: Emit) -> str | None:
    """Merge, export, quantize, and check the GGUF against the trained model in
    llama.cpp (another child process); the results go into ``summary``. Returns why it
    failed (the person has been told), or None.

    ``trainer`` is the training loop (its ``evaluate()`` is PyTorch's side of the
    validation-loss check)."""
    f16_path = merge_and_write_f16(spec, peft_model, base, emit)
    emit(tp.Phase("quantizing", f"quantizing to {spec.export.quant} and checking with "
                  "llama.cpp"))
    job = CheckJob(quant=spec.export.quant, result_path=str(folder.gguf_check_result_file),
                   f16_path=str(f16_path), out_path=str(spec.gguf))
    return _check(folder, spec, peft_model, trainer, val, device, summary, emit, job)


def check_live_adapter(folder: RunFolder, spec: RunSpec, peft_model: Any, base: Any,
                       trainer: Any, val: Any, device: torch.device, summary: RunSummary,
                       emit: Emit) -> str | None:
    """The same gate for a result kept as a live adapter: llama.cpp applies the GGUF
    adapter to the base, nothing is merged or quantized."""
    if not summary.adapter_gguf:
        message = "the adapter could not be written for llama.cpp, so it cannot be used live"
        emit(tp.Error("export_failed", message))
        return message
    emit(tp.Phase("adapter_check", "checking the adapter on the base with llama.cpp"))
    job = CheckJob(quant="adapter", result_path=str(folder.gguf_check_result_file),
                   base_path=str(base.gguf_path), adapter_path=summary.adapter_gguf)
    return _check(folder, spec, peft_model, trainer, val, device, summary, emit, job)


def _check(folder: RunFolder, spec: RunSpec, peft_model: Any, trainer: Any, val: Any,
           device: torch.device, summary: RunSummary, emit: Emit,
           job: CheckJob) -> str | None:
    """Run ``backends.export.gguf_check`` on ``job`` against the PyTorch model's numbers,
    and apply the export gate."""
    from backends.training.batching import pack

    export = spec.export
    # Reference numbers from the PyTorch model for the llama.cpp check.
    samples = [r.ids[:FIDELITY_MAX_TOKENS] for r in val.records[:export.fidelity_samples]]
    ref = reference_logits(peft_model, samples, device)
    if job.live:  # and the base alone, to measure the quantized base's departure
        with peft_model.disable_adapter():
            ref.update({k.replace("sample", "base"): v for k, v in
                        reference_logits(peft_model, samples, device).items()})
    from safetensors.torch import save_file

    ref_path = folder.path / "fidelity_reference.safetensors"
    save_file(ref, str(ref_path))
    check_records = val.records[:VAL_CHECK_MAX_RECORDS]
    packed = [pack([r]) for r in check_records]
    trainer.val_records = check_records
    torch_val = trainer.evaluate()
    job.threads = Machine.detect().cpu_cores
    job.reference = ReferenceSamples(samples, str(ref_path))
    job.validation = ValidationSamples([r.ids for r in check_records],
                                       [b.predict_at.tolist() for b in packed],
                                       [b.targets.tolist() for b in packed])
    job_path = folder.gguf_check_job_file

    def check(extra_bufts: bool) -> subprocess.CompletedProcess[str]:
        job.extra_bufts = extra_bufts
        job.write(job_path)
        Path(job.result_path).unlink(missing_ok=True)  # a crashed try's answer is none
        return run_module("backends.export.gguf_check", [str(job_path)])

    # The run folder lives in <home>/runs/<id>; the home remembers which llama.cpp
    # kernels are safe on this machine.
    kernels = KernelMemory(folder.home.kernels_file)
    proc, _fell_back = run_with_fallback(kernels, check)
    ref_path.unlink(missing_ok=True)  # up to hundreds of MB of logits
    result = read_answer(CheckResult, Path(job.result_path), proc, "the llama.cpp check")
    if result.error is not None:
        message = f"quantizing or checking the GGUF failed: {result.error}"
        emit(tp.Error("export_failed", message))
        return message
    if not job.live:
        emit(tp.Exported("gguf", result.path, result.size_bytes))
    summary.fidelity = fidelity_of(result.measures, torch_val, job.quant,
                                   export.thresholds(), len(check_records))
    if summary.fidelity.failed:
        # The gate: nothing is registered; the adapter and the checkpoint stay.
        if not job.live:
            Path(result.path).unlink(missing_ok=True)
        folder.write_summary(summary)
        what = "adapter" if job.live else "export"
        message = (f"the {what} check failed, so the model was not added to the library: "
                   + "; ".join(summary.fidelity.failed)
                   + f". The adapter is kept in {summary.adapter_dir}.")
        emit(tp.Error("export_failed", message))
        return message
    if not job.live:
        summary.gguf_path, summary.gguf_size_bytes = result.path, result.size_bytes
    summary.quantize_seconds, summary.check_seconds = result.quantize_s, result.check_s
    return None


def fidelity_of(measures: CheckMeasures, torch_val: float, quant: str,
                limits: FidelityThresholds, val_records: int) -> Fidelity:
    """The check's numbers, and the export gate's reasons to refuse (none: it passed)."""
    return Fidelity(**asdict(measures), torch_val_loss=round(torch_val, 5), quant=quant,
                    val_records=val_records,
                    failed=failures(measures, torch_val, quant, limits))
