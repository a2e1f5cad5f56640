"""``hearth finetune`` and ``hearth runs``: fine-tuning from the terminal.

Kept apart from :mod:`app.cli.main` so the fine-tuning commands can grow without crowding
the chat and library commands. Contract as for the rest of the CLI: exit 0 on
success, 2 on bad input (a bad dataset prints its line-numbered problems before any
training starts), 1 when the worker fails; Ctrl+C checkpoints and stops the run, which
``--resume RUN_ID`` continues.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.chat.corrections import CorrectionStore
from app.cli.common import pick_model
from app.cli.run_loop import follow_run
from app.errors import BadInput, ExitCode
from app.finetune.advice import fact_advice
from app.finetune.client import TrainingClient
from app.finetune.datasets import DatasetError, load_dataset
from app.finetune.runs.folder import RunFolder, create_run, list_runs
from app.finetune.runs.records import RunSummary
from app.finetune.settings import PRESETS, QUANT_TYPES, ExportSettings, preset
from app.finished_run import adopt_run
from app.machine.profile import Machine
from app.units import (
    format_bytes,
    format_duration,
    format_token_rate,
)
from app.workspace import Workspace


def add_parsers(sub: Any) -> None:
    ft = sub.add_parser("finetune", help="teach a model with LoRA on your data, then export "
                        "it as a GGUF model")
    ft.add_argument("-m", "--model", help="base model name (default: the starter model)")
    ft.add_argument("--data", help="dataset: OpenAI chat JSONL, ShareGPT, Alpaca or text")
    ft.add_argument("--corrections", action="store_true",
                    help="train on the corrections made with 'Correct this' in chats "
                    "(as the Fine-tune tab's 'Corrections from chats'), instead of --data")
    ft.add_argument("--preset", choices=PRESETS, default="balanced")
    ft.add_argument("--epochs", type=float)
    ft.add_argument("--max-steps", type=int)
    ft.add_argument("--lr", type=float, help="peak learning rate")
    ft.add_argument("--rank", type=int, help="LoRA rank (alpha follows as 2 x rank)")
    ft.add_argument("--batch-size", type=int)
    ft.add_argument("--max-seq-len", type=int)
    ft.add_argument("--seed", type=int)
    ft.add_argument("--out", help="name of the fine-tuned model in the library")
    ft.add_argument("--quant", choices=QUANT_TYPES, default="q8_0")
    ft.add_argument("--adapter-only", action="store_true",
                    help="keep only the LoRA adapter; skip the merge and GGUF export")
    ft.add_argument("--resume", metavar="RUN_ID", help="continue a run that failed or "
                    "was stopped (cancelled, interrupted) from its last checkpoint")
    ft.add_argument("--json", action="store_true", help="print the summary as JSON")
    runs = sub.add_parser("runs", help="fine-tuning runs").add_subparsers(
        dest="runs_command", required=True)
    ls = runs.add_parser("list", help="list fine-tuning runs")
    ls.add_argument("--json", action="store_true")


def finetune(ws: Workspace, args: argparse.Namespace) -> int:
    run_id = args.resume or _new_run(ws, args)
    client = TrainingClient(ws.home, run_id)
    if args.resume:
        folder = RunFolder.of(ws.home, run_id)
        status = folder.status()
        if not folder.resumable(status):
            why = ("" if not status.resumable else " and has no checkpoint yet")
            raise BadInput(f"run {run_id} is {status}{why}; only runs that failed or were "
                           "stopped (cancelled, interrupted) after a checkpoint can be "
                           "resumed")
    print(f"Run {run_id} ({'resuming' if args.resume else 'starting'}); cancel with Ctrl+C, "
          f"resume with: hearth finetune --resume {run_id}", file=sys.stderr)
    return follow_run(client, lambda summary: _finished(ws, summary, args.json),
                      lambda event: f"Cancelled at step {event.step}. Resume with: hearth "
                                    f"finetune --resume {run_id}")


def _finished(ws: Workspace, summary: RunSummary, as_json: bool) -> int:
    """Put the run's model in the library (the one rule: app.finished_run) and report."""
    adopted = adopt_run(ws.library, ws.home, summary)
    if adopted.model is not None:
        summary.library_name = adopted.model.name
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        _print_summary(summary)
    if adopted.problem:
        print(f"hearth: {adopted.problem}", file=sys.stderr)
        return ExitCode.FAILED
    if summary.teach is not None and adopted.model is not None:
        print(f"Kept as a taught version of {summary.base_model.name}, not in use; use it "
              f"with: hearth teach --use {adopted.model.name}", file=sys.stderr)
    return ExitCode.OK


def _new_run(ws: Workspace, args: argparse.Namespace) -> str:
    if args.data and args.corrections:
        raise BadInput("give --data FILE or --corrections, not both")
    if not args.data and not args.corrections:
        raise BadInput("--data FILE (or --corrections) is needed to start a run (or "
                       "--resume RUN_ID)")
    record = pick_model(ws, args.model)
    # The corrections as they are now, in a file named by its content (the run's
    # provenance keeps pointing at what it trained on): calls with their tools too.
    data = (CorrectionStore(ws.library.conn).snapshot(ws.home.datasets)
            if args.corrections else args.data)
    try:
        dataset = load_dataset(data)
    except DatasetError as exc:
        raise BadInput(str(exc)) from exc
    try:
        settings = preset(args.preset, dataset.stats.records, Machine.detect())
        settings = settings.with_overrides(
            epochs=args.epochs, max_steps=args.max_steps, learning_rate=args.lr,
            rank=args.rank, alpha=2.0 * args.rank if args.rank else None,
            batch_size=args.batch_size, max_seq_len=args.max_seq_len, seed=args.seed)
        export = ExportSettings(quant=args.quant, out_name=args.out,
                                gguf=not args.adapter_only)
        run_id = create_run(ws.home, record, dataset, settings, export)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    s = settings
    print(f"{dataset.path.name}: {dataset.format} format, {dataset.stats.describe()}",
          file=sys.stderr)
    print(f"Base model {record.name}; preset {args.preset}: rank {s.rank}, alpha {s.alpha:g}, "
          f"lr {s.learning_rate:g}, "
          + (f"{s.max_steps} steps" if s.max_steps else f"{s.epochs:g} epochs")
          + f", batch {s.batch_size} x {s.grad_accumulation}, max {s.max_seq_len} tokens",
          file=sys.stderr)
    advice = fact_advice(dataset, settings)
    if advice is not None:
        print(f"warning: {advice.message} (--preset {advice.preset})", file=sys.stderr)
    return run_id


def _print_summary(s: RunSummary) -> None:
    est = s.estimate
    if s.library_name:
        print(f"Fine-tuned model: {s.library_name}  ({s.gguf_path})")
    else:
        print("Fine-tuned adapter (no GGUF export)")
    print(f"  training: {s.steps} steps, {s.trained_tokens:,} tokens in "
          f"{format_duration(s.train_seconds)} ({format_token_rate(s.tokens_per_s)}) on "
          f"{s.device}")
    print(f"  loss: {_loss(s.first_train_loss)} -> {_loss(s.final_train_loss)} (train), "
          f"validation {_loss(s.val_loss)}")
    measured = est.measured
    print(f"  time (whole run): estimated {format_duration(est.seconds)} (formula)"
          + (f", {format_duration(measured.seconds)} (measured at step "
             f"{measured.at_step})" if measured else "")
          + f", actual {format_duration(s.total_seconds or 0)}")
    print(f"  peak memory: estimated {format_bytes(est.peak_memory_bytes)}, actual "
          f"{format_bytes(s.peak_memory_bytes)}")
    if s.compiled:
        print(f"  torch.compile: {s.compiled.line()}")
    if s.truncated_records:
        print(f"  {s.truncated_records} records were truncated to "
              f"{s.settings.max_seq_len} tokens")
    fid = s.fidelity
    if fid:
        print(f"  fidelity (F16 GGUF in llama.cpp vs PyTorch): largest logit difference "
              f"{fid.logits_max_abs_diff:.4f} (logits up to {fid.logits_ref_max_abs:.1f}), "
              f"top-1 agreement {fid.top1_agreement:.1%} over {fid.tokens_compared} "
              "tokens")
        print(f"  validation loss: PyTorch {fid.torch_val_loss:.4f}, {fid.quant} GGUF "
              f"{fid.gguf_val_loss:.4f}")
        for warning in fid.warnings:
            print(f"  WARNING: {warning}")
    print(f"  adapter: {s.adapter_dir}")
    if s.recall is not None:  # last: the line beside the prompt
        print(f"  {s.recall.line()}")
        if s.recall.warning():
            print(f"  WARNING: {s.recall.warning()}")


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def runs(ws: Workspace, args: argparse.Namespace) -> int:
    found = list_runs(ws.home)
    if args.json:
        print(json.dumps([r.to_json() for r in found], indent=2))
        return ExitCode.OK
    if not found:
        print("No fine-tuning runs yet. Start one with: hearth finetune --data FILE")
        return ExitCode.OK
    print(f"{'RUN':22} {'STATUS':12} {'STEP':>9} {'BASE':24} {'OUTPUT':28} {'VAL LOSS':>8}")
    for r in found:
        step = f"{r.step}/{r.total_steps or '?'}"
        val = f"{r.val_loss:.4f}" if r.val_loss is not None else "-"
        print(f"{r.run_id:22} {r.status:12} {step:>9} {r.base_model[:24]:24} "
              f"{(r.output or '-')[:28]:28} {val:>8}")
    return ExitCode.OK
