"""``hearth models search``, ``pull`` and ``fit``: the hub and the memory check, on the CLI.

Kept apart from :mod:`app.cli.main` so the hub's commands, progress bar and error mapping
live in one place. ``pull`` is resumable by design (:mod:`app.models.download`): the
partial file and its sidecar stay in ``downloads/`` after Ctrl+C, a dropped connection
or a full disk, and running the same command again continues with an HTTP Range request.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from app.cli.progress import ProgressLine
from app.errors import ExitCode
from app.models.download import Download, DownloadPaused, DownloadProgress
from app.models.hub import HubClient
from app.models.memory_fit import verdict_for
from app.units import format_byte_rate, format_bytes, format_clock
from app.workspace import Workspace


def add_hub_parsers(models: Any) -> None:
    """Add ``search`` and ``pull`` to the ``models`` sub-command parser."""
    search = models.add_parser("search", help="search the Hugging Face hub for GGUF models")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--json", action="store_true")
    pull = models.add_parser("pull", help="download a GGUF model from the hub (resumable, "
                             "SHA-256 verified)")
    pull.add_argument("repo", help="repository, e.g. bartowski/Llama-3.2-1B-Instruct-GGUF")
    which = pull.add_mutually_exclusive_group()
    which.add_argument("--quant", help="quantization to pick, e.g. Q4_K_M (the default)")
    which.add_argument("--file", help="exact file name in the repository")
    pull.add_argument("--name", help="name in the library (default: the file name)")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    fit = models.add_parser("fit", help="will this model fit in memory at a context length?")
    fit.add_argument("name")
    fit.add_argument("--ctx", type=int, help="context length (default: the load setting)")
    fit.add_argument("--gpu-layers", type=int, help="layers offloaded to the GPU "
                     "(default: the load setting; -1 for all)")
    fit.add_argument("--json", action="store_true")


def run_hub_command(ws: Workspace, args: argparse.Namespace) -> int:
    """Run ``search``, ``pull`` or ``fit``; :class:`app.models.hub.HubError` propagates."""
    if args.models_command == "fit":
        return _fit(ws, args)
    client = HubClient()
    if args.models_command == "search":
        results = client.search(args.query, limit=args.limit)
        if args.json:
            print(json.dumps([r.to_json() for r in results], indent=2))
        elif not results:
            print(f"No GGUF models found for {args.query!r}.")
        else:
            print(f"{'REPOSITORY':56} {'DOWNLOADS':>10} {'LIKES':>6}")
            for r in results:
                gated = " (gated)" if r.gated else ""
                print(f"{(r.repo + gated)[:56]:56} {r.downloads:>10,} {r.likes:>6,}")
        return ExitCode.OK
    file = client.pick_file(args.repo, quant=args.quant, filename=args.file,
                            revision=args.revision)
    bar = DownloadProgressView(sys.stderr)
    job = Download(ws.home, ws.library, file, bar.update, endpoint=client.endpoint,
                   name=args.name)
    if job.partial_bytes:
        print(f"Resuming {file.filename} from {format_bytes(job.partial_bytes)}",
              file=sys.stderr)
    try:
        record = job.run()
    except KeyboardInterrupt:
        bar.finish()  # end the bar's line before the message
        print(f"Stopped; {format_bytes(job.partial_bytes)} kept. Run the same command "
              "again to resume.", file=sys.stderr)
        return ExitCode.CANCELLED
    except DownloadPaused:
        return ExitCode.CANCELLED
    finally:
        bar.finish()
    print(f"installed {record.name} ({record.info.quantization}, "
          f"{format_bytes(record.info.file_size)}, SHA-256 verified)")
    return ExitCode.OK


def _fit(ws: Workspace, args: argparse.Namespace) -> int:
    record = ws.library.get(args.name)
    load = ws.settings.load
    n_ctx = args.ctx or load.n_ctx
    gpu_layers = load.n_gpu_layers if args.gpu_layers is None else args.gpu_layers
    verdict = verdict_for(record.info, n_ctx, gpu_layers, load.flash_attn,
                          cache_type=load.cache_type)
    estimate = verdict.estimate
    if args.json:
        print(json.dumps({"model": record.name, "n_ctx": n_ctx, "level": verdict.level,
                          "typical_bytes": estimate.typical, "peak_bytes": estimate.peak,
                          "weights_bytes": estimate.weights,
                          "kv_cache_bytes": estimate.kv_cache,
                          "ram_available_bytes": verdict.system.ram_available,
                          "detail": verdict.detail}, indent=2))
    else:
        print(f"{verdict.level.upper()}: {verdict.detail}")
    return ExitCode.OK


class DownloadProgressView:
    """A download's progress on the CLI's one progress line (:mod:`app.cli.progress`)."""

    def __init__(self, stream: TextIO) -> None:
        self.line = ProgressLine(stream)

    def update(self, p: DownloadProgress) -> None:
        # One unit (MiB) for the whole download, so the redrawn numbers keep their place.
        done, total = format_bytes(p.done, unit="MiB"), format_bytes(p.total, unit="MiB")
        speed = format_byte_rate(p.speed_bps, unit="MiB")
        self.line.show(p.fraction, f"{p.fraction:4.0%} {done:>12} of {total}  {speed:>12}  "
                       f"ETA {format_clock(p.eta_s)}")

    def finish(self) -> None:
        self.line.end_line()
