"""``hearth`` on the command line: the second face on the same core as the GUI.

Scripts and acceptance checks use this, so its contract is kept stable: exit 0 on
success, 2 on bad input (unknown model, unreadable file) with one line on stderr and
never a traceback, 1 when the model worker fails (the codes: :class:`app.errors.ExitCode`;
which error gives which: each :class:`app.errors.HearthError`'s ``exit_code``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from app.cli.chat import add_parser as add_chat_parser
from app.cli.chat import chat
from app.cli.common import pick_model
from app.cli.docs import add_parser as add_docs_parser
from app.cli.docs import docs
from app.cli.docs import writes as docs_writes
from app.cli.export import add_parser as add_export_parser
from app.cli.export import export
from app.cli.finetune import add_parsers as add_finetune_parsers
from app.cli.finetune import finetune, runs
from app.cli.models import add_hub_parsers, run_hub_command
from app.cli.serve import add_parser as add_serve_parser
from app.cli.serve import serve
from app.cli.teach import add_parser as add_teach_parser
from app.cli.teach import teach
from app.cli.terminal import printable_output
from app.cli.tools import add_parser as add_tools_parser
from app.cli.tools import tools
from app.errors import BadInput, ExitCode, HearthError
from app.models.library import LibraryError
from app.units import format_bytes, format_params
from app.workspace import HomeLocked, Workspace, open_workspace


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth", description="Run and teach language models on your own machine. "
        "With no command, opens the app.")
    parser.add_argument("--home", help="data folder (default: $HEARTH_HOME or the "
                        "platform's user data folder)")
    sub = parser.add_subparsers(dest="command")

    models = sub.add_parser("models", help="the model library").add_subparsers(
        dest="models_command", required=True)
    ls = models.add_parser("list", help="list installed models")
    ls.add_argument("--json", action="store_true")
    imp = models.add_parser("import", help="validate a GGUF file and copy it in")
    imp.add_argument("path")
    imp.add_argument("--name")
    info = models.add_parser("info", help="show one model's metadata")
    info.add_argument("name")
    info.add_argument("--json", action="store_true")
    rm = models.add_parser("rm", help="remove a model (and its file, if Hearth owns it)")
    rm.add_argument("name")
    add_hub_parsers(models)

    add_chat_parser(sub)
    add_tools_parser(sub)

    _add_bench(sub)
    doctor = sub.add_parser("doctor", help="check this machine and Hearth's set-up, with a "
                            "short self-test; exit 1 lists each problem and what to do")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("-m", "--model", help="model for the llama.cpp self-test "
                        "(default: the starter model)")
    doctor.add_argument("--forget-kernels", action="store_true",
                        help="forget that llama.cpp's optimized CPU kernels crashed here, "
                        "and test them again")
    add_export_parser(sub)
    add_serve_parser(sub)
    add_docs_parser(sub)
    sub.add_parser("gui", help="open the app (the default)")
    return parser


def _add_bench(sub: Any) -> None:
    """``hearth bench ...``: each benchmark names its baseline in its help."""
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(
        dest="bench_command", required=True)
    inf = bench.add_parser("inference", help="decode/prefill speed and TTFT through the "
                           "worker vs a direct llama-cpp-python loop")
    inf.add_argument("-m", "--model")
    inf.add_argument("--json", action="store_true")
    inf.add_argument("--tokens", type=int, default=128, help="tokens to decode per run")
    inf.add_argument("--threads", type=int)
    spec = bench.add_parser("speculative", help="decode speed with prompt-lookup "
                            "speculative decoding off and on, same run")
    spec.add_argument("-m", "--model")
    spec.add_argument("--json", action="store_true")
    spec.add_argument("--tokens", type=int, default=64, help="tokens to decode per reply")
    spec.add_argument("--draft", type=int, default=10, help="tokens drafted per step")
    thr = bench.add_parser("threads", help="chat speed with auto, 1 and all-core threads, "
                           "idle and during a fine-tune")
    thr.add_argument("-m", "--model")
    thr.add_argument("--json", action="store_true")
    tb = bench.add_parser("teach", help="the editing benchmark: made-up facts taught one "
                          "correction each, scored on generated answers, and poison sets")
    tb.add_argument("-m", "--model", help="library model (default: the starter model)")
    tb.add_argument("--facts", type=int, default=0, help="how many facts (0: all 120)")
    tb.add_argument("--round", type=int, default=10, help="corrections per Teach")
    tb.add_argument("--no-poison", action="store_true", help="skip the poison sets")
    tb.add_argument("--sequential", action="store_true", help="teach in rounds, each "
                    "continuing the last accepted version (earlier facts still answered)")
    tb.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    tb.add_argument("--json", action="store_true")
    tools = bench.add_parser("tools", help="tool use: right tool, right arguments, on a "
                             "small BFCL-style set (simple, multiple, parallel, irrelevance)")
    tools.add_argument("-m", "--model")
    tools.add_argument("--json", action="store_true")
    ft = bench.add_parser("finetune", help="Hearth's training loop against transformers "
                          "Trainer + PEFT: tokens/s, memory, validation loss, MFU")
    ft.add_argument("--model", help="base model GGUF path (default: the starter model)")
    ft.add_argument("--json", action="store_true")
    ft.add_argument("--steps", type=int, default=12)
    ft.add_argument("--records", type=int, default=96)
    ft.add_argument("--batch-size", type=int, default=4)
    ft.add_argument("--max-seq-len", type=int, default=512)
    ft.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ft.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    ft.add_argument("--repeat", type=int, default=2, help="rounds of baseline-then-Hearth; "
                    "each side's fastest round counts (a shared machine's speed swings)")
    ft.add_argument("--compile", choices=("off", "auto", "on"), default="auto",
                    help="torch.compile for Hearth's loop, as HEARTH_TRAIN_COMPILE (auto, "
                    "as a fine-tune: only where the run is long enough to pay it back; "
                    "compiling counts in Hearth's time)")
    docs = bench.add_parser("docs", help="document search: recall@5 of BM25, vectors and "
                            "both fused on the project's question set; index and query time")
    docs.add_argument("--scale", type=int, default=100_000,
                      help="synthetic passages for the vector-scan timing (0: skip)")
    docs.add_argument("--answers", action="store_true", help="also judge the chat model's "
                      "answers to the questions, alone and from the passages found")
    docs.add_argument("-m", "--model", help="the model that answers (default: the starter)")
    docs.add_argument("--json", action="store_true")
    add_finetune_parsers(sub)
    add_teach_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    # Every line the CLI prints may quote a stranger's text: see app.cli.terminal.
    with printable_output():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "gui"):
        # The window itself is opened by the 'hearth' launcher (ui.entry), not here.
        parser.print_help(sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        workspace = open_workspace(args.home, lock=_writer(args))
    except HomeLocked as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except (OSError, RuntimeError, LibraryError) as exc:
        print(f"hearth: cannot open the data folder: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    for notice in workspace.notices:
        print(f"hearth: {notice}", file=sys.stderr)
    try:
        handler = {"models": _models, "chat": chat, "bench": _bench,
                   "finetune": finetune, "runs": runs, "teach": teach,
                   "doctor": _doctor, "export": export, "serve": serve,
                   "tools": tools, "docs": docs}[args.command]
        return handler(workspace, args)
    except HearthError as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.CANCELLED
    finally:
        workspace.close()


def _writer(args: argparse.Namespace) -> str | None:
    """Who is opening the home, for commands that change its files; None for the rest.

    Those commands hold the home's lock, so they refuse to run beside the app or each
    other; reading commands (list, info, search, fit, runs list) run beside anything.
    Chat, bench and doctor write too: conversations, the kernels that crashed
    (``kernels.json``), the fine-tuning benchmarks' base-model cache; the app writes the
    same files, so they take the lock as well.
    """
    if args.command == "models" and args.models_command in ("import", "rm", "pull"):
        return f"hearth models {args.models_command}"
    if args.command == "tools" and args.tools_command in ("add", "rm"):
        return f"hearth tools {args.tools_command}"
    if args.command == "docs" and docs_writes(args):
        return f"hearth docs {args.docs_command}"
    if args.command in ("finetune", "teach", "chat", "doctor"):
        return f"hearth {args.command}"
    if args.command == "bench":
        return f"hearth bench {args.bench_command}"
    return None


# ------------------------------------------------------------------------ models


def _models(ws: Workspace, args: argparse.Namespace) -> int:
    lib = ws.library
    if args.models_command in ("search", "pull", "fit"):
        return run_hub_command(ws, args)
    if args.models_command == "list":
        records = lib.list()
        if args.json:
            print(json.dumps([r.to_json() for r in records], indent=2))
        elif not records:
            print("No models yet. Import one with: hearth models import PATH")
        else:
            print(f"{'NAME':32} {'ARCH':10} {'PARAMS':>8} {'QUANT':8} {'SIZE':>9} {'CTX':>7}")
            for r in records:
                info = r.info
                print(f"{r.name[:32]:32} {info.architecture[:10]:10} "
                      f"{format_params(info.parameters):>8} {info.quantization[:8]:8} "
                      f"{format_bytes(info.file_size):>9} "
                      f"{info.context_length or '?':>7}")
        return ExitCode.OK
    if args.models_command == "import":
        record = lib.import_file(args.path, args.name)
        print(f"imported {record.name} ({format_params(record.info.parameters)} parameters, "
              f"{record.info.quantization}, {format_bytes(record.info.file_size)})")
        return ExitCode.OK
    if args.models_command == "info":
        record = lib.get(args.name)
        if args.json:
            print(json.dumps(record.to_json(), indent=2))
        else:
            for key, value in record.to_json().items():
                print(f"{key:18} {value}")
        return ExitCode.OK
    if args.models_command == "rm":
        record = lib.remove(args.name)
        kept = "" if record.managed else f" (its file {record.path} was left in place)"
        print(f"removed {record.name}{kept}")
        return ExitCode.OK
    raise BadInput(f"unknown models command {args.models_command!r}")


# ------------------------------------------------------------------------ doctor


def _doctor(ws: Workspace, args: argparse.Namespace) -> int:
    from app.doctor import run_doctor

    model = pick_model(ws, args.model).path if args.model else None
    report = run_doctor(ws.home, model, forget_kernels=args.forget_kernels)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for line in report.lines():
            print(line)
    return ExitCode.OK if report.healthy else ExitCode.FAILED


# ------------------------------------------------------------------------- bench


def _bench(ws: Workspace, args: argparse.Namespace) -> int:
    from app.bench.finetune import run_finetune_bench
    from app.bench.inference import run_inference_bench
    from app.bench.speculative import run_speculative_bench
    from app.bench.threads import run_threads_bench

    if args.bench_command == "finetune":
        result = run_finetune_bench(ws, args.model, steps=args.steps, records=args.records,
                                    batch_size=args.batch_size, max_seq_len=args.max_seq_len,
                                    threads=args.threads, dtype=args.dtype,
                                    repeat=args.repeat, compile=args.compile)
        print(json.dumps(result, indent=2) if args.json else "\n".join(result["summary"]))
        return ExitCode.OK
    if args.bench_command == "docs":
        from app.bench.docs import run_docs_bench

        result = run_docs_bench(ws, scale=args.scale, answers=pick_model(ws, args.model)
                                if args.answers else None)
        print(json.dumps(result, indent=2) if args.json else "\n".join(result["summary"]))
        return ExitCode.OK
    record = pick_model(ws, args.model)
    if args.bench_command == "teach":
        from app.bench.teach import run_teach_bench

        result = run_teach_bench(ws, record, facts=args.facts, round_size=args.round,
                                 poison=not args.no_poison, threads=args.threads,
                                 sequential=args.sequential)
    elif args.bench_command == "threads":
        result = run_threads_bench(ws, record)
    elif args.bench_command == "tools":
        from app.bench.tools import run_tools_bench

        result = run_tools_bench(ws, record)
    elif args.bench_command == "speculative":
        result = run_speculative_bench(ws, record, args.tokens, args.draft)
    else:
        result = run_inference_bench(ws, record, decode_tokens=args.tokens,
                                     threads=args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for line in result["summary"]:
            print(line)
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
