"""What a fine-tuning run produced, and deleting a run with everything it produced.

A run leaves its folder (``runs/<id>/``: data split, checkpoints, events, summary), the
LoRA adapter (``adapters/<id>/``), the F16 GGUF and the quantized GGUF (``models/``,
the latter registered in the library). Deleting a run removes all of these; files
outside the Hearth home are never touched.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSpec, RunSummary
from app.finetune.runs.results import model_of_run
from app.models.library import Library, ModelRecord
from app.paths import HearthHome


@dataclass
class RunFiles:
    run_id: str
    spec: RunSpec
    summary: RunSummary | None
    folder: Path
    adapter: Path
    gguf: Path
    gguf_f16: Path
    model: ModelRecord | None
    """The library entry of the exported model, when it is registered."""

    def existing(self) -> list[Path]:
        return [p for p in (self.folder, self.adapter, self.gguf, self.gguf_f16) if p.exists()]

    def size_bytes(self) -> int:
        total = 0
        for path in self.existing():
            files = path.rglob("*") if path.is_dir() else [path]
            total += sum(f.stat().st_size for f in files if f.is_file())
        return total


def run_files(home: HearthHome, library: Library, run_id: str) -> RunFiles:
    folder = RunFolder.of(home, run_id)
    spec = folder.spec()
    return RunFiles(run_id=run_id, spec=spec, summary=folder.summary(), folder=folder.path,
                    adapter=Path(spec.adapter_dir), gguf=spec.gguf, gguf_f16=spec.gguf_f16,
                    model=model_of_run(library, run_id))


def delete_run(home: HearthHome, library: Library, run_id: str) -> list[Path]:
    """Remove the run, its adapter, its GGUFs and its library entry; return what went."""
    files = run_files(home, library, run_id)
    removed = files.existing()
    if files.model is not None:
        library.remove(files.model.name)
    root = home.root.resolve()
    # Runs made before output paths held the run id could share one file with a later
    # run; a file the library lists for another model is that model's, never ours.
    others = {r.path.resolve() for r in library.list()}
    kept = [p for p in removed if p.resolve() in others]
    removed = [p for p in removed if p not in kept]
    for path in removed:
        if not path.resolve().is_relative_to(root):
            continue  # never delete outside the home
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed
