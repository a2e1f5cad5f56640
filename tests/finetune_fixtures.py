"""Shared fixtures and data for the fine-tuning tests: the fixtures reach every test through
conftest.py's ``pytest_plugins``, the helpers and data are imported."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.workspace import Workspace
from tests.tiny_model import write_tiny_llama

TINY_VERSION = 1  # bump when tests/tiny_model.py changes what it writes

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


def tiny_lora_llama(hidden: int = 32, seed: int = 0) -> Any:
    """A random 2-layer Llama (vocabulary 128) with a rank-4 LoRA on every linear layer,
    initialised non-zero so that LoRA changes the outputs: for the loop's maths."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    return get_peft_model(LlamaForCausalLM(config),
                          LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                     init_lora_weights=False))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", "utf-8")
    return path


@pytest.fixture(scope="session")
def hearth_cache(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A conversion cache kept in pytest's cache folder across sessions.

    Converting a GGUF vocabulary into a fast tokenizer takes tens of seconds on a small
    machine; every worker started by a test reads this cache (``HEARTH_CACHE``).
    """
    folder = Path(request.config.cache.mkdir("hearth-finetune")) / "base-models"
    folder.mkdir(exist_ok=True)
    old = os.environ.get("HEARTH_CACHE")
    os.environ["HEARTH_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("HEARTH_CACHE", None)
    else:
        os.environ["HEARTH_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_gguf(request: pytest.FixtureRequest) -> Path:
    """The tiny model, written once and kept (its path and mtime key the cache)."""
    path = Path(request.config.cache.mkdir("hearth-finetune")) / f"tiny-llama-v{TINY_VERSION}.gguf"
    if not path.exists():
        partial = path.with_suffix(".part")
        write_tiny_llama(partial)
        partial.replace(path)
    return path


@pytest.fixture
def tiny_ws(workspace: Workspace, tiny_gguf: Path, hearth_cache: Path) -> Workspace:
    """The test's home with the tiny model registered as "tiny" (and the shared cache)."""
    workspace.library.register(tiny_gguf, "tiny")
    return workspace


def run_tiny(home_ws, base, tmp_path: Path, export) -> object:
    """A short real run of the tiny model on the facts; its last event."""
    from app.finetune.client import TrainingClient
    from app.finetune.datasets import load_dataset
    from app.finetune.runs.folder import create_run
    from app.finetune.settings import LoraSettings

    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    settings = LoraSettings(rank=4, alpha=8, max_steps=4, batch_size=2,
                            learning_rate=1e-3, max_seq_len=128, seed=1)
    run_id = create_run(home_ws.home, base, dataset, settings, export)
    client = TrainingClient(home_ws.home, run_id)
    client.start()
    events = list(client.events(timeout=600))
    client.wait(30)
    return events
