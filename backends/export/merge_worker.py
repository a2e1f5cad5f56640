"""Merging a result kept as a live adapter into the weights, after its run ended.

    python -m backends.export.merge_worker RUN_DIR ANSWER.json

A Teach version ends as a GGUF adapter applied live on its base (fast to make, instant
to switch). When the person wants a model that stands alone, this does what a merged
run does at its end, with the same code and the same gate: the base is loaded the way
training loads it, the run's PEFT adapter (safetensors) is put on it, then merge, F16
GGUF, quantization (the run's ``export.quant``) and the llama.cpp check against the
PyTorch model (:meth:`backends.export.pipeline.ExportPipeline.merged`). On success the
run's summary gains its GGUF; the answer (:class:`app.finetune.merge.MergeResult`) goes
to the file named (:mod:`app.workers.answer`), progress to stderr. Runs in its own
process, because it needs PyTorch and llama.cpp may abort a process on a bad file.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from app.finetune import protocol as tp
from app.finetune.merge import MergeResult
from app.finetune.runs.folder import RunFolder
from app.workers.answer import write_answer


def _progress(event: Any) -> None:
    if isinstance(event, tp.Phase | tp.Log | tp.Error):
        print(event.message, file=sys.stderr, flush=True)


def merge_run(run_dir: Path) -> MergeResult:
    """Merge the run's adapter and export it; the answer (with ``error`` on failure)."""
    from peft import PeftModel

    from backends.export.pipeline import ExportPipeline
    from backends.training.loading import load_and_tokenize, pick_device
    from backends.training.trainer import Trainer

    folder = RunFolder(run_dir)
    spec, summary = folder.spec(), folder.summary()
    if summary is None or not summary.adapter_dir or not Path(summary.adapter_dir).is_dir():
        return MergeResult(error="the run has no saved adapter to merge")
    if summary.gguf_path and Path(summary.gguf_path).is_file():
        return MergeResult(gguf_path=summary.gguf_path)
    errors: list[str] = []

    def emit(event: Any) -> None:
        if isinstance(event, tp.Error):
            errors.append(event.message)
        _progress(event)

    loaded = load_and_tokenize(folder, spec, emit)
    if loaded is None:
        return MergeResult(error=errors[-1] if errors else "the run's data could not be read")
    device, _name = pick_device()
    # Trainable only so that the training loop can hold it: its evaluate() is the
    # validation loss the export gate compares with, computed exactly as in the run.
    model = PeftModel.from_pretrained(loaded.base.model, summary.adapter_dir,
                                      is_trainable=True).to(device)
    trainer = Trainer(model, loaded.train.records, loaded.val.records, spec.settings,
                      folder.path, emit, threading.Event(), device)
    failure = ExportPipeline(folder, spec, loaded.base, trainer, emit).merged(summary)
    if failure is not None:
        return MergeResult(error=failure)
    folder.write_summary(summary)
    return MergeResult(gguf_path=summary.gguf_path)


def main() -> None:
    try:
        result = merge_run(Path(sys.argv[1]))
    except Exception as exc:  # reported to the parent as a failed merge
        result = MergeResult(error=f"{type(exc).__name__}: {exc}")
    write_answer(Path(sys.argv[2]), result)
    sys.exit(1 if result.error is not None else 0)


if __name__ == "__main__":
    main()
