"""The sides of ``hearth bench finetune``, each run in a child process of its own so that
its peak memory is its own: ``python -m backends.bench.finetune_sides SIDE CONFIG.json``
prints one ``RESULT {json}`` line for :mod:`backends.bench.finetune` to compare.

- ``hearth``: Hearth's loop (:class:`backends.training.trainer.Trainer`), its MFU against
  the matmul peak measured right before and after it in the same process;
- ``baseline``: transformers' ``Trainer`` over the same PEFT model, padded batches;
- ``probe``: the dtype the training worker's own probe picks on this machine.

Each side prepares the same model, token ids and LoRA from the config, and measures its
validation loss with the same function afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.codec import to_dict


def _peak_memory(device: Any) -> int:
    from backends.training.trainer import peak_memory_bytes

    return peak_memory_bytes(device)


def _prepare(cfg: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model

    from app.finetune.datasets import Example, split_examples
    from backends.training.base_model import load_base
    from backends.training.data import tokenize_examples

    base = load_base(cfg["model"], cache_dir=Path(cfg["cache"]))
    examples = [Example(line=i + 1, messages=r["messages"])
                for i, r in enumerate(json.loads(Path(cfg["data"]).read_text()))]
    train_ex, val_ex = split_examples(examples, 0.1, seed=0)
    train = tokenize_examples(train_ex, base.tokenizer, base.template, cfg["max_seq_len"],
                              base.eos_token).records
    val = tokenize_examples(val_ex, base.tokenizer, base.template, cfg["max_seq_len"],
                            base.eos_token).records
    torch.manual_seed(0)
    model = get_peft_model(base.model, LoraConfig(
        r=cfg["rank"], lora_alpha=2 * cfg["rank"], lora_dropout=0.0,
        target_modules="all-linear", task_type="CAUSAL_LM"))
    return model, base.tokenizer, train, val


def _val_loss(model: Any, records: list[Any]) -> float:
    """Mean cross-entropy over every reply token of the validation records."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for r in records:
            labels = torch.tensor([t if m else -100 for t, m in zip(r.ids, r.target,
                                                                     strict=True)])
            out = model(input_ids=torch.tensor([r.ids]), labels=labels[None])
            n = int((labels[1:] != -100).sum())
            total += float(out.loss) * n
            count += n
    return total / max(1, count)


def _threads(cfg: dict[str, Any]) -> None:
    import torch

    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])


def useful_flops(model: Any, trainer: Any) -> float:
    """FLOPs the loop must do for the steps it ran: 4 per frozen decoder weight per real
    token (forward 2, backward to the activations 2), the same for the output head per
    target token, and 6 per LoRA weight per token (those get weight gradients too)."""
    import torch

    base = model.get_base_model()
    frozen = sum(m.weight.numel() for n, m in base.get_decoder().named_modules()
                 if isinstance(m, torch.nn.Linear) and "lora_" not in n)
    lora = sum(p.numel() for p in trainer.params.values())
    head = base.get_output_embeddings().weight.numel()
    targets = sum(trainer.train_records[i].n_targets
                  for step in range(trainer.step) for g in trainer.plan.step_micro_batches(step)
                  for i in g)
    return (4.0 * frozen + 6.0 * lora) * trainer.trained_tokens + 4.0 * head * targets


def _matmul_peak(model: Any, dtype: str) -> float:
    from backends.training.dtype_probe import matmul_speeds

    config = model.get_base_model().config
    fp32, bf16 = matmul_speeds(config.hidden_size, config.intermediate_size, tokens=512)
    return bf16 if dtype == "bfloat16" else fp32


def child_hearth(cfg: dict[str, Any]) -> dict[str, Any]:
    import torch

    _threads(cfg)

    from app.finetune.settings import LoraSettings
    from backends.training.trainer import Trainer

    model, _, train, val = _prepare(cfg)
    settings = LoraSettings(rank=cfg["rank"], alpha=2 * cfg["rank"],
                            learning_rate=cfg["lr"], max_steps=cfg["steps"],
                            batch_size=cfg["batch_size"], max_seq_len=cfg["max_seq_len"],
                            warmup_ratio=0.1, min_lr_ratio=0.0, max_grad_norm=1.0,
                            eval_every=cfg["steps"] + 1, checkpoint_every=cfg["steps"] + 1)
    dtype = cfg.get("dtype") or "float32"
    if (mode := cfg["compile"]) != "off":
        # The rounds share a cache of their own: the first compiles cold, as a person's
        # first long run does, the others find the kernels (as their next runs do).
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cfg["inductor_cache"]
    with tempfile.TemporaryDirectory() as tmp:
        autocast = torch.bfloat16 if dtype == "bfloat16" else None
        trainer = Trainer(model, train, val, settings, Path(tmp), emit=lambda e: None,
                          cancel=threading.Event(), device=torch.device("cpu"),
                          autocast_dtype=autocast, compile_mode=mode)
        # Measure the training loop only, as the baseline's is: its validation loss is
        # taken afterwards by the same function as the baseline's.
        trainer.evaluate = lambda limit=None: float("nan")  # type: ignore[method-assign]
        peak_before = _matmul_peak(model, dtype)
        started, cpu = time.perf_counter(), time.process_time()
        trainer.run()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak_after = _matmul_peak(model, dtype)
    peak = (peak_before + peak_after) / 2
    flops = useful_flops(model, trainer)
    return {"trainer": "hearth", "seconds": seconds, "cpu_seconds": cpu,
            "tokens": trainer.trained_tokens,
            "tokens_per_s": trainer.trained_tokens / seconds,
            "tokens_per_cpu_s": trainer.trained_tokens / cpu,
            "final_train_loss": trainer.history[-1]["loss"], "dtype": dtype,
            "useful_gflops": flops / 1e9, "achieved_gflops_per_s": flops / seconds / 1e9,
            "peak_gflops_per_s": peak, "peak_before_after": [peak_before, peak_after],
            "mfu": flops / seconds / 1e9 / peak,
            "val_loss": _val_loss(model, val),
            "compiled": trainer.compiler.report and to_dict(trainer.compiler.report),
            "peak_memory_bytes": _peak_memory(torch.device("cpu"))}


def child_baseline(cfg: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import (
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    _threads(cfg)
    model, tokenizer, train, val = _prepare(cfg)
    rows = [{"input_ids": r.ids, "attention_mask": [1] * len(r.ids),
             "labels": [t if m else -100 for t, m in zip(r.ids, r.target, strict=True)]}
            for r in train]
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    counted = {"tokens": 0}

    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        counted["tokens"] += sum(len(f["input_ids"]) for f in features)
        return collator(features)

    losses: list[float] = []

    class KeepLoss(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=cfg["batch_size"],
            max_steps=cfg["steps"], learning_rate=cfg["lr"], lr_scheduler_type="cosine",
            warmup_steps=max(1, round(0.1 * cfg["steps"])), max_grad_norm=1.0,
            logging_steps=1, save_strategy="no",
            report_to=[], seed=0, remove_unused_columns=False, use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True,
            bf16=cfg.get("dtype") == "bfloat16")
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate,
                          callbacks=[KeepLoss()])
        started, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"trainer": "baseline", "seconds": seconds, "cpu_seconds": cpu,
            "tokens": counted["tokens"],
            "tokens_per_s": counted["tokens"] / seconds,
            "tokens_per_cpu_s": counted["tokens"] / cpu,
            "final_train_loss": losses[-1] if losses else None,
            "val_loss": _val_loss(model, val),
            "peak_memory_bytes": _peak_memory(torch.device("cpu"))}


def child_probe(cfg: dict[str, Any]) -> dict[str, Any]:
    """The training worker's own dtype choice, on the same model and validation data."""
    import torch

    _threads(cfg)
    from app.finetune.settings import LoraSettings
    from backends.training.dtype_probe import choose_dtype
    from backends.training.trainer import Trainer

    model, _, train, val = _prepare(cfg)
    settings = LoraSettings(rank=cfg["rank"], alpha=2 * cfg["rank"], max_steps=1,
                            batch_size=cfg["batch_size"], max_seq_len=cfg["max_seq_len"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, train, val, settings, Path(tmp), emit=lambda e: None,
                          cancel=threading.Event(), device=torch.device("cpu"))

        def val_loss(dtype: Any) -> float:
            trainer.autocast_dtype = dtype
            return trainer.evaluate(limit=4)

        config = model.get_base_model().config
        started = time.perf_counter()
        choice = choose_dtype(torch.device("cpu"), config.hidden_size,
                              config.intermediate_size, val_loss,
                              step_speed=trainer.step_speed)
    return {**to_dict(choice), "probe_seconds": time.perf_counter() - started}


SIDES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "hearth": child_hearth, "baseline": child_baseline, "probe": child_probe}


def main() -> None:
    side, config = sys.argv[1:3]
    result = SIDES[side](json.loads(Path(config).read_text()))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
