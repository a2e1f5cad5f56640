"""The CLI's one progress display (app.cli.progress), as a log and as a terminal see it."""

from __future__ import annotations

import io

from app.cli.progress import ProgressLine, bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_tenth_and_no_carriage_returns() -> None:
    out = io.StringIO()
    line = ProgressLine(out, width=10)
    for step in range(101):
        line.show(step / 100, f"{step}%", log_text=f"step {step}")
    line.end_line()
    lines = out.getvalue().splitlines()
    assert lines == [f"step {n}" for n in range(0, 101, 10)]
    assert "\r" not in out.getvalue()


def test_a_terminal_redraws_one_line_and_ends_it_before_other_output() -> None:
    out = _Terminal()
    line = ProgressLine(out, width=10)
    line.show(0.0, "starting")
    line.show(0.5, "halfway")  # within 0.1 s of the last draw: skipped
    line.show(1.0, "done")     # the end is always drawn
    line.end_line()
    line.end_line()            # nothing drawn since: no blank line
    assert out.getvalue() == f"\r{bar(0.0, 10)} starting\r{bar(1.0, 10)} done\n"


def test_the_bar_is_clamped() -> None:
    assert bar(-0.5, 4) == "[....]" and bar(0.5, 4) == "[##..]" and bar(2.0, 4) == "[####]"
