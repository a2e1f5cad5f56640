"""The ``hearth`` command: the app window with no arguments, the CLI otherwise.

This launcher lives in ``ui`` because only ``ui`` may import Qt; the CLI itself
(``app.cli``) stays Qt-free and so starts fast and runs on machines without a display.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    gui_args = [a for a in args if a not in ("gui",)]
    wants_gui = not args or args == ["gui"] or (
        len(args) in (2, 3) and args[0] == "--home" and (len(args) == 2 or args[2] == "gui"))
    if wants_gui:
        from ui.app import run_app

        home = gui_args[1] if gui_args[:1] == ["--home"] else None
        return run_app(home)
    from app.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
