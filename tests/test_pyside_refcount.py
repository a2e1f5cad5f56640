"""PySide6 6.12.0 on CPython 3.11 takes a reference away from None on every void call and
from True on every signal emit, and Python aborts after a few thousand of them (a long
streamed reply's worth). pyproject.toml keeps 6.12 off Python 3.11; this checks that the
PySide6 actually installed survives a long session's worth of calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = """
import sys
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal
app = QCoreApplication([])
class Source(QObject):
    changed = Signal(object)
source = Source()
seen = []
source.changed.connect(seen.append)
timer = QTimer()
for i in range(60000):
    source.changed.emit(i)
    timer.stop()
assert len(seen) == 60000
print("alive", sys.getrefcount(None) > 0)
"""


def test_many_qt_calls_do_not_abort_python() -> None:
    # In a child process: the failure is an abort of the interpreter, not an exception.
    result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "alive True" in result.stdout
