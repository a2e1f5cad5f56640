"""packaging/bootstrap.sh installs exactly the system libraries Qt's window needs, found
by ldd on Qt's xcb platform plugin (issue 25: a bare Debian also lacked libxcb-icccm4
and libxcb-keysyms1, which the old fixed list of five libraries never looked for)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import PySide6
import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
linux_with_ldd = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("ldd") is None or not PLUGIN.exists(),
    reason="Qt's xcb plugin and ldd are Linux things")

LDD = """\tlinux-vdso.so.1 (0x00007ffc6a1f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f2a1c000000)
\tlibEGL.so.1 => /lib/x86_64-linux-gnu/libEGL.so.1 (0x00007f2a1bf00000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxkbcommon-x11.so.0 => not found
\tlibglib-2.0.so.0 => not found
\tlibgthread-2.0.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2a1c200000)
"""


def _bootstrap(call: str, stdin: str = "") -> str:
    """What one of bootstrap.sh's functions prints (sourced, the script runs nothing)."""
    done = subprocess.run(["bash", "-c", f"source packaging/bootstrap.sh && {call}"],
                          cwd=ROOT, input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_packages_of_the_libraries_not_found_and_only_those() -> None:
    assert _bootstrap("missing_qt_packages", LDD).split() == [
        "libglib2.0-0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0"]
    assert _bootstrap("missing_qt_packages", LDD.replace("not found", "/x/y.so")) == ""


@linux_with_ldd
@pytest.mark.skipif(shutil.which("dpkg") is None, reason="checked against dpkg's own records")
def test_each_library_the_plugin_needs_maps_to_the_package_that_ships_it() -> None:
    """The soname-to-package rule, checked on every system library the plugin links here
    (through libQt6XcbQpa, libQt6Gui and theirs) against dpkg's answer for its file."""
    ldd = subprocess.run(["ldd", str(PLUGIN)], capture_output=True, text=True,
                         check=True).stdout
    files: dict[str, str] = {}  # the file each soname resolved to -> the soname
    for line in ldd.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("/"):
            file = os.path.realpath(parts[2])
            if not Path(file).is_relative_to(Path(PySide6.__file__).parent.resolve()):
                files[file] = parts[0]  # not one of Qt's own, which come with PySide6
    owners = subprocess.run(["dpkg", "-S", *files], capture_output=True, text=True,
                            check=False).stdout
    shipped: dict[str, str] = {}
    for line in owners.splitlines():  # "libxcb-icccm4:amd64: /usr/lib/x86_64-linux-gnu/..."
        package, _, file = line.partition(": ")
        if file in files:  # Ubuntu 24.04 names some packages with a "t64" at the end
            shipped[files[file]] = package.split(":")[0].removesuffix("t64")
    assert {"libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0"} <= set(shipped)
    names = " ".join(shipped)
    mapped = _bootstrap(f"for lib in {names}; do debian_package $lib; done").split()
    assert dict(zip(shipped, mapped, strict=True)) == shipped


@linux_with_ldd
def test_nothing_the_window_needs_is_missing_on_this_machine() -> None:
    """The check bootstrap.sh runs, on this machine, where the libraries are installed;
    it finds the plugin in the project's .venv the way bootstrap.sh does."""
    assert _bootstrap(f"ldd '{PLUGIN}' | missing_qt_packages") == ""
    if Path(sys.prefix) == ROOT / ".venv":
        assert Path(_bootstrap("qt_xcb_plugin").strip()) == PLUGIN
