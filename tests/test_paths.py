"""app.paths.safe_stem: the one rule for names Hearth gives files in its home."""

from __future__ import annotations

import pytest

from app.paths import safe_stem


@pytest.mark.parametrize(("text", "stem"), [
    ("Llama-3.2-1B-Instruct-Q4_K_M", "Llama-3.2-1B-Instruct-Q4_K_M"),  # kept as it is
    ("my model / v2", "my-model-v2"),        # a run of unsafe characters is one '-'
    ("../../etc/passwd", "etc-passwd"),      # no way out of the folder, no hidden file
    (".hidden", "hidden"),
    ("模型", "model"),                        # nothing usable left: the fallback
    ("", "model"),
])
def test_names_become_safe_file_stems(text: str, stem: str) -> None:
    assert safe_stem(text) == stem


def test_the_fallback_can_be_named() -> None:
    assert safe_stem("///", fallback="run") == "run"
