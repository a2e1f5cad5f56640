"""The hook in conftest.py that puts a test in the slow tier by what it uses: it reads
the names in a test's code and follows the suite's own helpers into theirs."""

from __future__ import annotations

import pytest

from tests.conftest import SLOW_NAMES, _names_used


def _trains() -> None:
    Trainer()  # noqa: F821 - only read by the hook, never run (importing it costs torch)


class _Driver:
    def run(self) -> None:
        (lambda: _trains())()


def _drives() -> None:
    _Driver().run()


def _asks_pytest() -> None:
    pytest.approx(1.0)


def test_a_helper_of_a_helper_is_followed_into_its_code() -> None:
    assert _names_used(_drives, set()) & SLOW_NAMES.keys() == {"Trainer"}


def test_code_outside_the_suite_is_not_followed() -> None:
    assert _names_used(_asks_pytest, set()) == {"pytest", "approx"}


def test_a_test_that_uses_nothing_slow_is_in_the_fast_tier(
        request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("slow") is None
