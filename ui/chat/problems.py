"""What went wrong in the chat that the person must know and can act on.

Both halves of the chat raise problems: the model's lifecycle (the worker did not start,
the model did not load, the worker crashed) and the reply flow (a reply failed or could
not be saved). The problem card shows one at a time and its button says what it does,
so the kinds of answer live here, apart from either half.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ProblemAction(StrEnum):
    """What the problem card's button does."""

    NONE = ""
    """No button: the text says what to do."""
    RELOAD = "reload"
    """Restart the worker and load the model."""
    RETRY = "retry"
    """Ask for the reply again."""


@dataclass
class Problem:
    """Something the person must know and can act on, shown in the conversation."""

    text: str
    action: ProblemAction
    conversation_id: int | None = None
    details: str = ""
