"""The PySide6 face of Hearth: windows, widgets and Qt adapters of ``app`` objects.

Nothing here imports llama.cpp or torch; slow work happens in worker processes driven
through ``app`` clients, whose events arrive here as queued Qt signals.
"""

from ui.pyside_refcount import guard as _guard_pyside_refcount

# Before any other Qt use: PySide6 6.12.0 on CPython 3.11 aborts the interpreter after a
# few thousand calls without this (see ui/pyside_refcount.py).
_guard_pyside_refcount()
