"""How Hearth shows quantities to a person: bytes, durations, token rates, parameter counts.

One room for it, so the GUI, the CLI and the error messages of the core say "94.1 MiB"
and "3 min 05 s" the same way. Bytes are binary (KiB, MiB, GiB: what file managers and
``free -h`` show on Linux) with three significant digits; a progress display passes a
fixed ``unit`` so its numbers do not jump between units while it redraws.
"""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_BYTE_UNITS = {"TiB": TiB, "GiB": GiB, "MiB": MiB, "KiB": KiB}


def count(n: int, noun: str, plural: str | None = None) -> str:
    """"1 model", "2 models", "1,024 records": a number with its noun agreeing."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _three_digits(value: float) -> str:
    """Three significant digits, decided on the rounded value (9.996 is "10.0", not "10.00")."""
    if round(abs(value), 2) < 10:
        return f"{value:.2f}"
    if round(abs(value), 1) < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def format_bytes(n: float | None, *, unit: str | None = None, unknown: str = "?") -> str:
    """``n`` bytes for a person: "512 bytes", "12.0 KiB", "94.1 MiB", "1.27 GiB".

    ``unit`` ("KiB", "MiB", "GiB", "TiB") fixes the unit, with one decimal, for displays
    that redraw (a progress bar's numbers keep their place). ``None`` (size not known)
    is shown as ``unknown``.
    """
    if n is None:
        return unknown
    if unit is not None:
        return f"{n / _BYTE_UNITS[unit]:,.1f} {unit}"
    magnitude = abs(n)
    for name, size in _BYTE_UNITS.items():
        # Rounding may carry a value into the next unit: 1023.99 KiB is "1.00 MiB".
        if magnitude >= size or round(magnitude / size, 2) >= 1:
            return f"{_three_digits(n / size)} {name}"
    return "1 byte" if n == 1 else f"{n:.0f} bytes"


def format_byte_rate(bytes_per_s: float, *, unit: str | None = None) -> str:
    """A transfer speed: "6.2 MiB/s"."""
    return f"{format_bytes(bytes_per_s, unit=unit)}/s"


def format_duration(seconds: float) -> str:
    """A span of time in words: "45 s", "3 min 05 s", "1 h 02 min" (rounded to the second).

    Negative spans (a clock that stepped back, an estimate that overshot) show as "0 s".
    """
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_clock(seconds: float | None) -> str:
    """A countdown as a clock face: "4:05", "1:02:03"; "--:--" while it is not known."""
    if seconds is None:
        return "--:--"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


def format_token_rate(tokens_per_s: float | None) -> str:
    """A generation or training speed, three significant digits: "98.5 tok/s", "1,234 tok/s";
    "? tok/s" when not measured."""
    if tokens_per_s is None:
        return "? tok/s"
    return f"{_three_digits(tokens_per_s)} tok/s"


def format_params(n: int | None) -> str:
    """A model's parameter count the way model names say it: "135M", "1.7B", "?" if unknown."""
    if not n:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"
