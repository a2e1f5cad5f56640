"""After training: merge the adapter, export GGUF, quantize, and check it in llama.cpp.

The training recipe (:mod:`backends.training.recipe`) runs it at a run's end, and the
merge of a live result (:mod:`backends.export.merge_worker`) runs it later on the saved
adapter: one :class:`ExportPipeline` over the trained model, its run and its loop. The
check runs in a further child process (``python -m backends.export.gguf_check``), with
the kernel fallback of :mod:`app.inference.kernels`: llama.cpp can crash on some CPUs,
and a crash there must become a reason in the run, not a dead worker. The numbers
(logit differences, top-1 agreement, validation loss before and after) go into the
run's :class:`app.finetune.runs.records.Fidelity`, with a warning for each promise the
exported file does not keep.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from backends.training.base_model import BaseModel
    from backends.training.trainer import Trainer

Emit = Callable[[Any], None]
FIDELITY_MAX_TOKENS = 256
VAL_CHECK_MAX_RECORDS = 64
REFERENCE_LOGITS = "fidelity_reference.safetensors"
"""In the run folder while the check runs: the PyTorch model's logits (up to hundreds
of MB), removed when the check ends."""


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


def _adapter_state(peft_model: Any) -> dict[str, torch.Tensor]:
    """The LoRA weights under the names the merge and llama.cpp's adapter loader read."""
    from peft import get_peft_model_state_dict

    return {f"base_model.model.{k.removeprefix('base_model.model.')}":
            v.detach().float().cpu() for k, v in get_peft_model_state_dict(peft_model).items()}


def write_live_adapter(peft_model: Any, base_gguf: Path | None, alpha: float,
                       adapter_dir: Path, emit: Emit) -> Path | None:
    """The adapter in llama.cpp's GGUF format, beside the PEFT one, for chat to apply live.

    Only a GGUF base has the tensor names it needs; a failure costs the live adapter,
    never the run.
    """
    if base_gguf is None:
        return None
    from backends.export.adapter_gguf import export_adapter
    from backends.export.gguf_export import ExportError

    try:
        return export_adapter(base_gguf, _adapter_state(peft_model), alpha,
                              adapter_dir / "adapter.gguf", adapter_dir.name)
    except (ExportError, OSError, ValueError) as exc:
        emit(tp.Log("warning", f"the adapter could not be written for llama.cpp: {exc}"))
        return None


def fidelity_of(measures: CheckMeasures, torch_val: float, quant: str,
                limits: FidelityThresholds, val_records: int) -> Fidelity:
    """The check's numbers, and the export gate's reasons to refuse (none: it passed)."""
    return Fidelity(**asdict(measures), torch_val_loss=round(torch_val, 5), quant=quant,
                    val_records=val_records,
                    failed=failures(measures, torch_val, quant, limits))


class ExportPipeline:
    """One run's trained model on its way out: merged into a GGUF of its own, or kept as
    a live adapter; either way checked in llama.cpp against the model in PyTorch, and
    refused when the file does not keep the run's promises. Its results go into the
    run's summary; each step returns why it failed (the person has been told), or None.

    ``trainer`` is the training loop over the trained PEFT model: its ``evaluate()`` is
    PyTorch's side of the validation-loss check, its validation records the check's.
    """

    def __init__(self, folder: RunFolder, spec: RunSpec, base: BaseModel,
                 trainer: Trainer, emit: Emit) -> None:
        self.folder, self.spec, self.base, self.trainer, self.emit = \
            folder, spec, base, trainer, emit
        self.model = trainer.model
        self.val_records = trainer.val_records

    def run(self, summary: RunSummary) -> str | None:
        """The run's export, as its settings ask (merged, or live)."""
        return self.live(summary) if self.spec.export.live else self.merged(summary)

    def merged(self, summary: RunSummary) -> str | None:
        """Merge, export, quantize, and check the GGUF against the trained model."""
        f16_path = self._merge_and_write_f16()
        self.emit(tp.Phase("quantizing", f"quantizing to {self.spec.export.quant} and "
                           "checking with llama.cpp"))
        job = CheckJob(quant=self.spec.export.quant,
                       result_path=str(self.folder.gguf_check_result_file),
                       f16_path=str(f16_path), out_path=str(self.spec.gguf))
        return self._check(summary, job)

    def live(self, summary: RunSummary) -> str | None:
        """The same gate for a result kept as a live adapter: llama.cpp applies the GGUF
        adapter to the base, nothing is merged or quantized."""
        if not summary.adapter_gguf:
            message = ("the adapter could not be written for llama.cpp, so it cannot be "
                       "used live")
            self.emit(tp.Error("export_failed", message))
            return message
        self.emit(tp.Phase("adapter_check", "checking the adapter on the base with llama.cpp"))
        job = CheckJob(quant="adapter", result_path=str(self.folder.gguf_check_result_file),
                       base_path=str(self.base.gguf_path), adapter_path=summary.adapter_gguf)
        return self._check(summary, job)

    def _merge_and_write_f16(self) -> Path:
        """Merge the adapter into the base weights and write them as an F16 GGUF."""
        from backends.export.gguf_export import export_gguf
        from backends.export.merge import merge_lora

        settings, base = self.spec.settings, self.base
        assert base.gguf_path is not None, "the export copies a GGUF base's metadata"
        self.emit(tp.Phase("merging", "merging the adapter into the weights"))
        merged = merge_lora({k: v.detach().float().cpu() for k, v in
                             base_weights(self.model).items()},
                            _adapter_state(self.model), settings.alpha, settings.rank)
        self.emit(tp.Phase("exporting", "writing the merged model as GGUF (F16)"))
        f16_path = self.spec.gguf_f16
        export_gguf(base.gguf_path, merged, f16_path, self.spec.out_name,
                    chat_template=None if base.template.source == "gguf"
                    else base.template.text)
        del merged
        self.emit(tp.Exported("gguf_f16", str(f16_path), f16_path.stat().st_size))
        return f16_path

    def _check(self, summary: RunSummary, job: CheckJob) -> str | None:
        """Run ``backends.export.gguf_check`` on ``job`` against the PyTorch model's
        numbers, and apply the export gate."""
        self._measure_in_torch(job)
        # PyTorch's validation loss on the records the job carries to llama.cpp.
        torch_val = self.trainer.evaluate(limit=VAL_CHECK_MAX_RECORDS)
        job_path = self.folder.gguf_check_job_file

        def check(extra_bufts: bool) -> subprocess.CompletedProcess[str]:
            job.extra_bufts = extra_bufts
            job.write(job_path)
            Path(job.result_path).unlink(missing_ok=True)  # a crashed try's answer is none
            return run_module("backends.export.gguf_check", [str(job_path)])

        # The run folder lives in <home>/runs/<id>; the home remembers which llama.cpp
        # kernels are safe on this machine.
        kernels = KernelMemory(self.folder.home.kernels_file)
        proc, _fell_back = run_with_fallback(kernels, check)
        (self.folder.path / REFERENCE_LOGITS).unlink(missing_ok=True)
        result = read_answer(CheckResult, Path(job.result_path), proc, "the llama.cpp check")
        if result.error is not None:
            message = f"quantizing or checking the GGUF failed: {result.error}"
            self.emit(tp.Error("export_failed", message))
            return message
        if not job.live:
            self.emit(tp.Exported("gguf", result.path, result.size_bytes))
        summary.fidelity = fidelity_of(result.measures, torch_val, job.quant,
                                       self.spec.export.thresholds(),
                                       min(len(self.val_records), VAL_CHECK_MAX_RECORDS))
        if summary.fidelity.failed:
            # The gate: nothing is registered; the adapter and the checkpoint stay.
            if not job.live:
                Path(result.path).unlink(missing_ok=True)
            self.folder.write_summary(summary)
            what = "adapter" if job.live else "export"
            message = (f"the {what} check failed, so the model was not added to the "
                       "library: " + "; ".join(summary.fidelity.failed)
                       + f". The adapter is kept in {summary.adapter_dir}.")
            self.emit(tp.Error("export_failed", message))
            return message
        if not job.live:
            summary.gguf_path, summary.gguf_size_bytes = result.path, result.size_bytes
        summary.quantize_seconds, summary.check_seconds = result.quantize_s, result.check_s
        return None

    def _measure_in_torch(self, job: CheckJob) -> None:
        """What llama.cpp's numbers are compared with: the PyTorch model's logits on the
        first validation records (and the base's alone, for a live adapter: the quantized
        base's own departure), and the validation records the loss is measured on."""
        from safetensors.torch import save_file

        from backends.training.batching import pack

        samples = [r.ids[:FIDELITY_MAX_TOKENS]
                   for r in self.val_records[:self.spec.export.fidelity_samples]]
        ref = reference_logits(self.model, samples, self.trainer.device)
        if job.live:
            with self.model.disable_adapter():
                ref.update({k.replace("sample", "base"): v for k, v in
                            reference_logits(self.model, samples, self.trainer.device).items()})
        ref_path = self.folder.path / REFERENCE_LOGITS
        save_file(ref, str(ref_path))
        check_records = self.val_records[:VAL_CHECK_MAX_RECORDS]
        packed = [pack([r]) for r in check_records]
        job.threads = Machine.detect().cpu_cores
        job.reference = ReferenceSamples(samples, str(ref_path))
        job.validation = ValidationSamples([r.ids for r in check_records],
                                           [b.predict_at.tolist() for b in packed],
                                           [b.targets.tolist() for b in packed])
