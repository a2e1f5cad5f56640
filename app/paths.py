"""Where Hearth keeps its data.

Everything lives under one home so that a test, a portable install or a person who
wants to move their data can point ``$HEARTH_HOME`` somewhere and find it all there.
Nothing is written outside the home except explicit exports.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import platformdirs

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(text: str, fallback: str = "model") -> str:
    """``text`` as a file name's stem Hearth may create in its home: the one slug rule.

    Runs of anything but letters, digits, ``.``, ``_`` and ``-`` become one ``-`` (a
    model name or a hub file name may hold ``/``, spaces or worse); leading and trailing
    ``-`` and ``.`` go (no hidden files, no ``..``); nothing left gives ``fallback``.
    """
    return _UNSAFE.sub("-", text).strip("-.") or fallback


@dataclass(frozen=True)
class HearthHome:
    """The folders of one Hearth home. Build one with :func:`resolve_home`."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def downloads(self) -> Path:
        """Partial downloads; never listed as models until verified and moved."""
        return self.root / "downloads"

    @property
    def database(self) -> Path:
        return self.root / "hearth.db"

    @property
    def settings_file(self) -> Path:
        return self.root / "settings.json"

    @property
    def kernels_file(self) -> Path:
        """Remembered llama.cpp kernel choices for this machine (:mod:`app.inference.kernels`)."""
        return self.root / "kernels.json"

    @property
    def base_model_cache(self) -> Path:
        """Bases converted for training (:func:`app.finetune.plan.conversion_folder`);
        the worker reads ``HEARTH_CACHE`` instead where set (tests and benchmarks share
        one conversion across homes)."""
        return self.root / "cache" / "base-models"

    @property
    def busy(self) -> Path:
        """Thread claims of running heavy work (:mod:`app.machine.threads`)."""
        return self.root / "busy"

    def ensure(self) -> HearthHome:
        for folder in (self.models, self.adapters, self.datasets, self.runs, self.logs,
                       self.downloads):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> HearthHome:
    """The home given explicitly, else ``$HEARTH_HOME``, else the platform's data dir."""
    if explicit is not None:
        root = Path(explicit)
    elif os.environ.get("HEARTH_HOME"):
        root = Path(os.environ["HEARTH_HOME"])
    else:
        root = Path(platformdirs.user_data_dir("hearth", appauthor=False))
    return HearthHome(root.expanduser().resolve()).ensure()
