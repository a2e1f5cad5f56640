"""app.paths.safe_stem: the one rule for names Hearth gives files in its home."""

from __future__ import annotations

import pytest

from app.paths import MAX_STEM, safe_stem


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


def test_a_long_name_is_cut_with_a_hash_so_that_its_files_can_be_made(tmp_path) -> None:
    """A name longer than a file name may be (seen with a hostile run name): cut, and two
    names differing only at their ends stay two stems."""
    long_a, long_b = "out" + "x" * 400 + "a", "out" + "x" * 400 + "b"
    a, b = safe_stem(long_a), safe_stem(long_b)
    assert len(a) <= MAX_STEM and len(b) <= MAX_STEM and a != b
    assert a.startswith("outxxx") and safe_stem(long_a) == a  # the same name, the same stem
    (tmp_path / f"{a}.20261207-120000-abcd.q4_k_m.gguf").write_bytes(b"")  # a real file name
