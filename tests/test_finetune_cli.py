"""``hearth finetune`` / ``hearth runs list`` as a person (or a script) runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.workspace import open_workspace
from tests.finetune_fixtures import fact_rows, write_jsonl

ROOT = Path(__file__).resolve().parent.parent


def hearth(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, HEARTH_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def home_with_tiny(tmp_path: Path, tiny_gguf: Path, hearth_cache: Path) -> Path:
    home = tmp_path / "home"
    ws = open_workspace(home, register_starter=False)
    ws.library.register(tiny_gguf, "tiny")
    ws.close()
    return home


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": '
     b'"yo"}]}\n{"messages": [\n', "Line 2 of data.jsonl: not valid JSON"),
    (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": '
     b'"yo"}]}\n{"messages": [{"content": "no role"}]}\n',
     "Line 2 of data.jsonl: message 1 has no 'role'"),
    (b'{"messages": [{"role": "user", "content": "only a question"}]}\n',
     "Line 1 of data.jsonl: no assistant message"),
    (b"", "data.jsonl is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "data.jsonl is a binary file"),
])
def test_bad_dataset_exits_2_before_training(home_with_tiny: Path, tmp_path: Path,
                                             content: bytes, expected: str) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes(content)
    result = hearth(home_with_tiny, "finetune", "--model", "tiny", "--data", str(data))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    listed = hearth(home_with_tiny, "runs", "list", "--json")
    assert json.loads(listed.stdout) == []  # nothing was started


def test_unknown_model_and_run_are_bad_input(home_with_tiny: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "facts.jsonl", fact_rows())
    result = hearth(home_with_tiny, "finetune", "--model", "nope", "--data", str(data))
    assert result.returncode == 2 and "no model named 'nope'" in result.stderr
    result = hearth(home_with_tiny, "finetune", "--resume", "20990101-000000-dead")
    assert result.returncode == 2 and "there is no run" in result.stderr


def test_finetune_tiny_model_end_to_end(home_with_tiny: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "facts.jsonl", fact_rows())
    result = hearth(home_with_tiny, "finetune", "--model", "tiny", "--data", str(data),
                    "--max-steps", "6", "--batch-size", "4", "--rank", "4", "--lr", "1e-3",
                    "--max-seq-len", "128", "--out", "tiny-facts", "--quant", "q8_0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Fine-tuned model: tiny-facts" in result.stdout
    assert "fidelity (F16 GGUF in llama.cpp vs PyTorch)" in result.stdout
    assert "tokenized: 23 train / 2 validation records" in result.stderr

    runs = json.loads(hearth(home_with_tiny, "runs", "list", "--json").stdout)
    assert [r["status"] for r in runs] == ["finished"]
    run_dir = home_with_tiny / "runs" / runs[0]["run_id"]
    summary = json.loads((run_dir / "summary.json").read_text())
    fidelity = summary["fidelity"]
    assert fidelity["top1_agreement"] >= 0.9 and not fidelity["warnings"]
    assert fidelity["logits_max_abs_diff"] < 0.05 * fidelity["logits_ref_max_abs"]
    assert abs(fidelity["gguf_val_loss"] - fidelity["torch_val_loss"]) < 0.1
    assert (home_with_tiny / "adapters" / runs[0]["run_id"] / "adapter_config.json").exists()

    models = json.loads(hearth(home_with_tiny, "models", "list", "--json").stdout)
    tuned = next(m for m in models if m["name"] == "tiny-facts")
    assert tuned["source"] == "finetune" and tuned["quantization"] == "Q8_0"
    assert tuned["provenance"]["base_model"] == "tiny"
    assert len(tuned["provenance"]["dataset_sha256"]) == 64
    assert tuned["provenance"]["settings"]["max_steps"] == 6
    assert not list((home_with_tiny / "models").glob("*.f16.gguf"))  # intermediate gone

    again = hearth(home_with_tiny, "finetune", "--resume", runs[0]["run_id"])
    assert again.returncode == 2 and "is finished" in again.stderr
