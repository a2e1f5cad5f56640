"""The ui package survives PySide6 6.12.0's reference leak on CPython 3.11: thousands of
signal emits and void calls (a long streamed reply's worth) no longer abort Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = """
import sys
from ui.pyside_refcount import guard
guard()
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
    # In a child process: without the guard, the failure is an abort, not an exception.
    result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "alive True" in result.stdout
