"""A guard against a reference-counting bug of PySide6 6.12.0 on CPython 3.11.

PySide6/shiboken6 6.12.0 return ``None`` (from every void method: ``setText``,
``QTimer.start``, ``processEvents`` ...) and ``True`` (from ``Signal.emit``) without
taking a reference, as if these objects were immortal — which they are only from
CPython 3.12 on. On 3.11 each call takes one reference away, and after a few thousand
calls the interpreter aborts with "Fatal Python error: none_dealloc" (or bool_dealloc):
the chat window died within minutes of streaming. PySide6 6.11.3 does not have the bug,
and ``pyproject.toml`` keeps 6.12 off Python 3.11.

Where the buggy combination is installed anyway, :func:`guard` probes for the leak once
and, only if it is there, gives ``None``, ``True`` and ``False`` a reference count so
large that no session can exhaust it — the immortality 3.12 gives them. These objects
are static and never freed, so nothing else changes.
"""

from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 40
_applied = False


def _leaks() -> bool:
    from PySide6.QtCore import QObject, QTimer, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    timer = QTimer()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(8):
        timer.stop()
        probe.ping.emit()
    return (sys.getrefcount(None) < none_before - 4
            or sys.getrefcount(True) < true_before - 4)


def guard() -> bool:
    """Apply the workaround if (and only if) this PySide6 leaks; True when applied."""
    global _applied
    if _applied or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return _applied
    if _leaks():
        for obj in (None, True, False):
            ctypes.c_ssize_t.from_address(id(obj)).value += _HEADROOM
        _applied = True
    return _applied
