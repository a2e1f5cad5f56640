"""Errors meant for a person, and the CLI's exit codes.

Any exception that derives from :class:`HearthError` carries a message written for the
person using Hearth: one line, the reason and what to do next ("Line 14 of data.jsonl:
'messages' is missing"). The GUI shows it as it is and the CLI prints it after
``hearth:`` and exits with the error's :attr:`HearthError.exit_code`, never with a
traceback. Everything else is a bug, and is reported as one.

The person-facing errors of each room (``LibraryError``, ``HubError``, ``DatasetError``...)
derive from it and keep their older bases (``ValueError``, ``RuntimeError``) so the code
that already catches those goes on working.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What ``hearth`` returns to the shell: the contract scripts and checks rely on."""

    OK = 0
    FAILED = 1
    """The work could not be done (a worker died, a run failed, a folder is locked)."""
    BAD_INPUT = 2
    """What was asked cannot be done as asked: an unknown model, an unreadable file."""
    REJECTED = 3
    """``hearth teach``: the taught version failed its check; nothing changed in the chat."""
    CANCELLED = 130
    """Stopped by Ctrl+C (128 + SIGINT, as shells report it); finished work is kept."""


class HearthError(Exception):
    """A problem to tell the person in words: the message says why and what to do."""

    exit_code: ExitCode = ExitCode.FAILED


class BadInput(HearthError):
    """What the person asked for cannot be done as asked: exit code 2 on the CLI."""

    exit_code = ExitCode.BAD_INPUT
