"""The ``hearth`` command: the app window with no arguments, the CLI otherwise.

This launcher lives in ``ui`` because only ``ui`` may import Qt; the CLI itself
(``app.cli.main``) stays Qt-free and so starts fast and runs on machines without a display.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    home = args[1] if args[:1] == ["--home"] and len(args) > 1 else None
    rest = args[2:] if home is not None else args
    if rest in ([], ["gui"]):
        from ui.application import run_app

        return run_app(home)
    from app.cli.main import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
