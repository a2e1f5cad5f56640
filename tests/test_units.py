"""app.units: the one way quantities are shown, with the edge cases the old copies handled."""

from __future__ import annotations

import pytest

from app.units import (
    GiB,
    KiB,
    MiB,
    TiB,
    format_byte_rate,
    format_bytes,
    format_clock,
    format_duration,
    format_params,
    format_token_rate,
)


@pytest.mark.parametrize(("n", "shown"), [
    (None, "?"),                # a model whose file size is not known (library table)
    (0, "0 bytes"),             # an empty run folder (run history)
    (1, "1 byte"),
    (1000, "1000 bytes"),       # under a KiB stays in bytes (hub: "1000 bytes free")
    (1023, "1.00 KiB"),         # rounding carries into the next unit, never "1023 bytes"
    (1536, "1.50 KiB"),
    (100 * KiB, "100 KiB"),     # three significant digits: no needless ".0"
    (94.1 * MiB, "94.1 MiB"),
    (MiB - 1, "1.00 MiB"),      # 1023.99 KiB is not "1,024 KiB"
    (100 * MiB, "100 MiB"),     # the memory-fit verdict's "only 100 MiB of RAM free"
    (8 * GiB, "8.00 GiB"),      # ... and its "8.00 GiB of RAM free"
    (1.27 * GiB, "1.27 GiB"),
    (2.5 * TiB, "2.50 TiB"),
    (5000 * TiB, "5,000 TiB"),  # TiB is the last unit, however large (hub disk space)
    (-3 * MiB, "-3.00 MiB"),    # a difference may be negative; the sign is kept
])
def test_bytes_have_one_look(n: float | None, shown: str) -> None:
    assert format_bytes(n) == shown


def test_unknown_size_can_be_said_in_words() -> None:
    assert format_bytes(None, unknown="size unknown") == "size unknown"


def test_a_fixed_unit_keeps_a_redrawn_display_steady() -> None:
    # The CLI's download bar and the fine-tune memory line: one unit, one decimal, commas.
    assert format_bytes(12.34 * MiB, unit="MiB") == "12.3 MiB"
    assert format_bytes(0, unit="MiB") == "0.0 MiB"
    assert format_bytes(1234.5 * MiB, unit="MiB") == "1,234.5 MiB"
    assert format_byte_rate(6.2 * MiB, unit="MiB") == "6.2 MiB/s"
    assert format_byte_rate(6.2 * MiB) == "6.20 MiB/s"
    with pytest.raises(KeyError):
        format_bytes(1, unit="MB")


@pytest.mark.parametrize(("seconds", "shown"), [
    (-3, "0 s"),                 # an estimate that overshot never shows a negative time
    (0, "0 s"),
    (44.4, "44 s"),
    (59.6, "1 min 00 s"),        # rounded before it is split into minutes
    (185, "3 min 05 s"),
    (3599, "59 min 59 s"),
    (3600, "1 h 00 min"),
    (3725, "1 h 02 min"),
    (90061, "25 h 01 min"),      # hours do not roll into days
])
def test_durations_read_as_words(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "--:--"),             # no ETA yet (the first progress report)
    (0, "0:00"), (65.9, "1:05"), (3723, "1:02:03"), (-1, "0:00"),
])
def test_countdowns_read_as_a_clock(seconds: float | None, shown: str) -> None:
    assert format_clock(seconds) == shown


def test_token_rates_and_parameter_counts() -> None:
    assert format_token_rate(1234.4) == "1,234 tok/s"
    assert format_token_rate(98.5) == "98.5 tok/s"  # the chat's decode speed keeps its decimal
    assert format_token_rate(None) == "? tok/s"
    assert [format_params(n) for n in (None, 0, 900, 135_000_000, 1_700_000_000)] == [
        "?", "?", "1K", "135M", "1.7B"]
