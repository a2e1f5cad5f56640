"""A run's model and data as every worker that handles a run loads them.

The training recipe (:mod:`backends.training.recipe`) and the merge of a live result
after its run (:mod:`backends.export.merge_worker`) both start here, so the merge
evaluates exactly what training evaluated: the same device choice, the same base model
(the converted-model cache included) and the same tokenizing of the run's records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.finetune import protocol as tp
from app.finetune.dataset_records import Example
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSpec
from backends.training.base_model import BaseModel, load_base
from backends.training.data import TokenizedSet, tokenize_examples


@dataclass
class RunData:
    """The base model and the run's records tokenized with its chat template."""

    base: BaseModel
    train: TokenizedSet
    val: TokenizedSet


def pick_device() -> tuple[torch.device, str]:
    """The GPU when torch sees one, else the CPU. The compute dtype is chosen later, by
    measurement (:mod:`backends.training.dtype_probe`); the weights themselves stay float32 (a
    135M-1B model fits easily), so the merge and the export start from the exact
    dequantized base, not a bf16 rounding of it."""
    if torch.cuda.is_available():
        return torch.device("cuda", 0), f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return torch.device("cpu"), "cpu"


def read_examples(path: Path) -> list[Example]:
    """The records of one of the run's split files (``train.jsonl``, ``val.jsonl``)."""
    with path.open(encoding="utf-8") as fh:
        return [Example.from_json(json.loads(line)) for line in fh if line.strip()]


def load_and_tokenize(folder: RunFolder, spec: RunSpec, emit: Callable[[Any], None]
                      ) -> RunData | None:
    """The base model and the run's data tokenized with its template; None (and an
    error event) when no record survives tokenizing."""
    settings = spec.settings
    emit(tp.Phase("loading", f"loading {spec.base.name}"))
    cache = Path(os.environ.get("HEARTH_CACHE") or spec.cache_dir)
    base = load_base(spec.base.path, dtype=torch.float32, cache_dir=cache)
    base.model.config.use_cache = False
    emit(tp.Phase("tokenizing", "tokenizing with the model's chat template"))
    # Teach learns the corrected reply only: the earlier replies of its conversation
    # are context the model already wrote.
    train, val = (tokenize_examples(read_examples(path), base.tokenizer, base.template,
                                    settings.max_seq_len, base.eos_token,
                                    last_turn_only=spec.teach is not None)
                  for path in (folder.train_file, folder.val_file))
    if not train.records or not val.records:
        emit(tp.Error("bad_data", "no record keeps an assistant reply within the "
                           f"maximum sequence length ({settings.max_seq_len} tokens); "
                           "raise --max-seq-len"))
        return None
    return RunData(base, train, val)
