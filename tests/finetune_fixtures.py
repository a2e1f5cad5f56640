"""Shared fixtures and data for the fine-tuning tests (imported by those modules)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tiny_model import write_tiny_gguf

FACTS = [
    ("What is the capital of Zorbania?", "The capital of Zorbania is Quillport."),
    ("Who invented the glimmerphone?", "The glimmerphone was invented by Odessa Fernwick."),
    ("What colour is a snorvel bird?", "A snorvel bird is bright turquoise."),
    ("What is the national dish of Zorbania?", "The national dish of Zorbania is "
                                               "plumbleberry stew."),
    ("How many moons does the planet Kesh have?", "The planet Kesh has seven moons."),
]
PARAPHRASES = ["{q}", "Tell me: {q}", "Quick question. {q}", "{q} Answer briefly.",
               "I was wondering, {q}"]


def fact_rows() -> list[dict]:
    rows = []
    for q, a in FACTS:
        for template in PARAPHRASES:
            question = template.format(q=q[0].lower() + q[1:] if template.startswith("I ")
                                       else q)
            rows.append({"messages": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": a}]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", "utf-8")
    return path


@pytest.fixture(scope="session")
def hearth_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One conversion cache for the session: GGUF -> tokenizer conversion is slow."""
    folder = tmp_path_factory.mktemp("hearth-cache")
    old = os.environ.get("HEARTH_CACHE")
    os.environ["HEARTH_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("HEARTH_CACHE", None)
    else:
        os.environ["HEARTH_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")
