"""``hearth models search``, ``pull`` and ``fit``: the hub and the memory check, on the CLI.

Kept apart from :mod:`app.cli.main` so the hub's commands, progress bar and error mapping
live in one place. ``pull`` is resumable by design: the partial file and its sidecar
stay in ``downloads/`` after Ctrl+C, a dropped connection or a full disk, and running
the same command again continues with an HTTP Range request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from app.models.hub import Download, DownloadPaused, DownloadProgress, HubClient
from app.models.memory_fit import verdict_for
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
        return 0
    file = client.pick_file(args.repo, quant=args.quant, filename=args.file,
                            revision=args.revision)
    bar = ProgressBar(sys.stderr)
    job = Download(ws.home, ws.library, file, bar.update, endpoint=client.endpoint,
                   name=args.name)
    if job.partial_bytes:
        print(f"Resuming {file.filename} from {job.partial_bytes / 2**20:.1f} MiB",
              file=sys.stderr)
    try:
        record = job.run()
    except KeyboardInterrupt:
        bar.finish()  # end the bar's line before the message
        print(f"Stopped; {job.partial_bytes / 2**20:.1f} MiB kept. Run the same command "
              "again to resume.", file=sys.stderr)
        return 130
    except DownloadPaused:
        return 130
    finally:
        bar.finish()
    print(f"installed {record.name} ({record.info['quantization']}, "
          f"{record.info['file_size'] / 2**20:.0f} MiB, SHA-256 verified)")
    return 0


def _fit(ws: Workspace, args: argparse.Namespace) -> int:
    record = ws.library.get(args.name)
    load = ws.settings.load
    n_ctx = args.ctx or load.n_ctx
    gpu_layers = load.n_gpu_layers if args.gpu_layers is None else args.gpu_layers
    verdict = verdict_for(record.info, n_ctx, gpu_layers, load.flash_attn)
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
    return 0


class ProgressBar:
    """A one-line text progress bar, redrawn in place, at most ten times a second."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self._last = 0.0
        self._drawn = False
        # Redrawing in place only makes sense on a terminal; a log gets one line per 10 %.
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._decile = -1

    def update(self, p: DownloadProgress) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and p.done < p.total:
            return
        self._last = now
        if not self._tty:
            decile = int(p.fraction * 10)
            if decile == self._decile:
                return
            self._decile = decile
        filled = int(self.width * p.fraction)
        eta = "--:--" if p.eta_s is None else _clock(p.eta_s)
        line = (f"\r[{'#' * filled}{'.' * (self.width - filled)}] {p.fraction:4.0%} "
                f"{p.done / 2**20:8.1f}/{p.total / 2**20:.1f} MiB "
                f"{p.speed_bps / 2**20:6.1f} MiB/s  ETA {eta}")
        self.stream.write(line if self._tty else line.lstrip("\r") + "\n")
        self.stream.flush()
        self._drawn = self._tty

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02}:{s:02}" if h else f"{m:02}:{s:02}"
