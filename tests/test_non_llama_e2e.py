"""A non-llama model, the whole way: Gemma 3 (norms stored as 1 + w, no chat template,
the family's turn markers in its vocabulary) fine-tuned with ``hearth finetune`` as a
person runs it, then chatted with through its live adapter and as the merged model,
then handed off in every format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.paths import resolve_home
from app.workspace import open_workspace
from tests.arch_factory import write_tiny_arch_gguf
from tests.finetune_fixtures import fact_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
QUESTION = [{"role": "user", "content": "What is the capital of Zorbania?"}]


def hearth(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HEARTH_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
def test_gemma3_fine_tunes_chats_with_its_adapter_and_hands_off(tmp_path: Path) -> None:
    base = write_tiny_arch_gguf("gemma3", tmp_path / "gemma3.gguf", chat_template=False,
                                specials=("<start_of_turn>", "<end_of_turn>"))
    home = tmp_path / "home"
    ws = open_workspace(home, register_starter=False)
    ws.library.register(base, "gem")
    ws.close()
    data = write_jsonl(tmp_path / "facts.jsonl", fact_rows())

    run = hearth(home, "finetune", "-m", "gem", "--data", str(data), "--max-steps", "6",
                 "--batch-size", "2", "--max-seq-len", "96", "--quant", "q8_0", "--out",
                 "gem-tuned", "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout[run.stdout.index("{"):])
    assert summary["fidelity"]["top1_agreement"] >= 0.9 and not summary["fidelity"]["failed"]
    merged, adapter = Path(summary["gguf_path"]), Path(summary["adapter_gguf"])
    assert merged.is_file() and adapter.is_file()
    # The base had no template: the tuned file carries the one it was trained with.
    template = gguf.GGUFReader(str(merged)).fields["tokenizer.chat_template"].contents()
    assert "<start_of_turn>" in template

    client = InferenceClient(home=resolve_home(home))
    try:
        client.start()
        loaded = client.load_blocking(base, n_ctx=256, n_threads=2)
        assert loaded.template_source == "family:gemma"
        client.set_adapter(adapter)
        assert isinstance(client.next_event(60), p.AdapterSet)
        events = list(client.stream_chat(QUESTION, p.SamplingParams(max_tokens=8, seed=1)))
        assert isinstance(events[-1], p.Done) and events[-1].stats.adapter == str(adapter)
        loaded = client.load_blocking(merged, n_ctx=256, n_threads=2)
        assert loaded.template_source == "gguf"
        events = list(client.stream_chat(QUESTION, p.SamplingParams(max_tokens=8, seed=1)))
        assert isinstance(events[-1], p.Done) and events[-1].stats.adapter == ""
    finally:
        client.close()

    for fmt in ("gguf", "ollama", "peft", "safetensors"):
        out = hearth(home, "export", "gem-tuned", "--to", str(tmp_path / fmt), "--format", fmt)
        assert out.returncode == 0, (fmt, out.stderr[-2000:])
    assert (tmp_path / "peft" / "gem-tuned-lora" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "safetensors" / "gem-tuned" / "model.safetensors").is_file()
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./gem-tuned.gguf")
