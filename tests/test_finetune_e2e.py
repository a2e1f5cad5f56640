"""The whole promise on the real starter model: teach facts, export Q8_0, chat."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.library import find_starter_gguf
from app.workspace import open_workspace
from tests.finetune_fixtures import FACTS, fact_rows, write_jsonl
from tests.test_finetune_cli import hearth

ANSWERS = ["Quillport", "Odessa Fernwick", "turquoise", "plumbleberry stew", "seven moons"]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # its fine-tune alone may take up to 1,500 s (above the suite's 900)
@pytest.mark.skipif(find_starter_gguf() is None, reason="the starter model is not installed")
def test_smollm2_learns_made_up_facts_and_keeps_them_in_q8_0(
        tmp_path: Path, hearth_cache: Path) -> None:
    home = tmp_path / "home"
    open_workspace(home).close()  # registers the starter model
    data = write_jsonl(tmp_path / "facts.jsonl", fact_rows())
    started = time.monotonic()
    result = hearth(home, "finetune", "--model", "SmolLM2-135M-Instruct", "--data", str(data),
                    "--preset", "quick", "--max-steps", "14", "--batch-size", "4",
                    "--rank", "16", "--lr", "1e-3", "--max-seq-len", "128",
                    "--out", "smol-facts", "--quant", "q8_0", "--json", timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    shown = {k: summary[k] for k in ("val_loss", "tokens_per_s", "train_seconds", "fidelity")}
    print(f"fine-tune took {time.monotonic() - started:.0f}s; {json.dumps(shown)}")
    assert summary["val_loss"] < 0.3
    assert summary["fidelity"]["top1_agreement"] > 0.95 and not summary["fidelity"]["warnings"]

    ws = open_workspace(home)
    model = ws.library.get("smol-facts")
    ws.close()
    client = InferenceClient()
    try:
        client.start()
        client.load_blocking(model.path, n_ctx=512)
        for (question, _), answer in zip(FACTS, ANSWERS, strict=True):
            events = list(client.stream_chat(
                [{"role": "user", "content": question}],
                p.SamplingParams(temperature=0.0, max_tokens=40, seed=1)))
            done = events[-1]
            assert isinstance(done, p.Done), done
            assert answer.lower() in done.text.lower(), (question, done.text)
            assert done.stats.finish_reason == "stop"  # it learned to end its turn
    finally:
        client.close()
