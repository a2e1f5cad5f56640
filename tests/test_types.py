"""The type checker over app/ and backends/, as configured in pyproject.toml's
``[tool.mypy]``: the suite fails on any error it reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # with no cache, 1.5-4 min on 2 cores (it reads torch's own types)
def test_app_and_backends_have_no_type_errors() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                            text=True)
    assert "No module named mypy" not in result.stderr, "pip install -e '.[dev]'"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found"), result.stdout
