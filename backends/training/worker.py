"""The training worker: ``python -m backends.training.worker RUN_DIR``.

Runs one fine-tuning run described by ``RUN_DIR/run.json`` (written by
:mod:`app.finetune.client`) from start to finish with its recipe: a fine-tune's
(:class:`backends.training.recipe.LoraRecipe`: load the base model, tokenize, train LoRA,
resuming from the last checkpoint when there is one, save the adapter, merge, export
GGUF F16, quantize and check it with llama.cpp in a further child process, write
``summary.json``) or Teach's (:class:`backends.training.teach_recipe.TeachRecipe`). This
module is the process around it: events (:mod:`app.finetune.protocol`) go to stdout as
JSON lines and to ``events.jsonl``; logs go to stderr. A ``cancel`` line on stdin,
SIGINT, or the parent closing stdin saves a checkpoint and stops; a failure becomes an
error event and a failed run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from app.finetune import protocol as tp
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.status import RunStatus
from app.machine.threads import ThreadClaims, auto_threads
from app.paths import HearthHome
from backends.training.recipe import LoraRecipe
from backends.training.teach_recipe import TeachRecipe

log = logging.getLogger("hearth.train")


class Emitter:
    """Sends each event to the parent (stdout) and to ``events.jsonl``.

    When the parent goes away (the app was killed or crashed) the pipe breaks. That
    must not kill the worker before it has saved its work: the first failed write
    sets ``parent_gone`` and ``cancel``, stdout is pointed at the null device, and the
    events keep going to ``events.jsonl``; the training loop then checkpoints at its
    next step and the run is recorded as interrupted (resumable).
    """

    def __init__(self, run_dir: Path, cancel: threading.Event | None = None) -> None:
        self.lock = threading.Lock()
        self.file = (run_dir / "events.jsonl").open("a", encoding="utf-8")
        self.phases: list[tuple[str, float]] = []  # (name, when it began): the timings
        self.cancel = cancel
        self.parent_gone = False

    def __call__(self, event: Any) -> None:
        if isinstance(event, tp.Phase):
            self.phases.append((event.name, time.perf_counter()))
        line = tp.encode(event)
        with self.lock:
            if not self.parent_gone:
                try:
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                except (OSError, ValueError):
                    self._lose_parent()
            self.file.write(line + "\n")
            self.file.flush()

    def _lose_parent(self) -> None:
        self.parent_gone = True
        if self.cancel is not None:
            self.cancel.set()
        log.warning("the app went away; saving a checkpoint and stopping")
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for exit


def _watch_stdin(cancel: threading.Event, emit: Emitter) -> None:
    try:
        for line in sys.stdin:
            if line.strip() == tp.CANCEL_COMMAND:
                cancel.set()
    except (OSError, ValueError):
        pass
    # The parent went away: stop at the next step, with a checkpoint.
    emit.parent_gone = emit.parent_gone or not _parent_alive()
    cancel.set()


def _parent_alive() -> bool:
    """False once this worker has been orphaned (re-parented to init or a subreaper)."""
    parent = os.environ.get("HEARTH_PARENT_PID")
    if parent and parent.isdigit():
        return os.getppid() == int(parent)
    return True


def run(run_dir: Path, emit: Emitter, cancel: threading.Event) -> int:
    """The run in ``run_dir`` by its recipe; the exit code of the worker (0 also when
    cancelled)."""
    folder = RunFolder(run_dir)
    spec = folder.spec()
    recipe = LoraRecipe if spec.teach is None else TeachRecipe
    return recipe(folder, spec, emit, cancel).run()


def main() -> None:
    run_dir = Path(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cancel = threading.Event()
    emit = Emitter(run_dir, cancel)
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    threading.Thread(target=_watch_stdin, args=(cancel, emit), daemon=True).start()
    # <home>/runs/<id>: the home's thread claims tell a chat worker left on "auto" to
    # keep off the cores this run computes on.
    claims = ThreadClaims(HearthHome(run_dir.parent.parent).busy)
    threads = auto_threads(claims)
    torch.set_num_threads(threads)
    try:
        with claims.claim("training", threads):
            code = run(run_dir, emit, cancel)
    except MemoryError:
        emit(tp.Error("out_of_memory", "training ran out of memory: lower the batch "
                           "size or the maximum sequence length"))
        RunFolder(run_dir).write_state(RunStatus.FAILED, error="out of memory")
        code = 1
    except Exception as exc:  # every failure becomes an event for the person
        from backends.export.gguf_export import ExportError
        from backends.training.base_model import BaseModelError

        kind = ("bad_model" if isinstance(exc, BaseModelError) else
                "export_failed" if isinstance(exc, ExportError) else "failed")
        traceback.print_exc()
        emit(tp.Error(kind, str(exc) or type(exc).__name__))
        RunFolder(run_dir).write_state(RunStatus.FAILED, error=str(exc))
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
