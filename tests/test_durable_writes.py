"""Files Hearth rewrites reach the disk before they are pointed at (issue 11: checkpoints
were not fsynced, so a power cut could leave ``latest.json`` pointing at empty files)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from app.atomic import atomic_write_text


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    """Every path passed to ``os.fsync`` during the test (the real fsync still runs)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads descriptors' paths from /proc")
    seen: set[Path] = set()
    real = os.fsync

    def spy(fd: int) -> None:
        seen.add(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def test_atomic_write_syncs_the_file_and_its_folder(tmp_path: Path, synced: set[Path]) -> None:
    target = tmp_path / "settings.json"
    atomic_write_text(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    assert tmp_path in synced
    assert any(p.parent == tmp_path and p.name.endswith(".tmp") for p in synced)
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_a_checkpoint_is_on_disk_before_latest_json_points_at_it(
        tmp_path: Path, synced: set[Path]) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from app.finetune.settings import LoraSettings
    from backends.training.data import Tokenized
    from backends.training.trainer import Trainer

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    model = get_peft_model(LlamaForCausalLM(config),
                           LoraConfig(r=2, lora_alpha=4, target_modules="all-linear",
                                      task_type="CAUSAL_LM"))
    records = [Tokenized(ids=[1, 2, 3, 4], target=[False, True, True, True], line=i)
               for i in range(1, 4)]
    trainer = Trainer(model, records, records[:1], LoraSettings(max_steps=2, batch_size=1),
                      tmp_path, lambda event: None, threading.Event(), torch.device("cpu"))
    trainer.train_step()
    trainer.step = 1
    final = trainer.save_checkpoint()
    checkpoints = tmp_path / "checkpoints"
    for written in final.iterdir():
        assert final.parent / f".{final.name}.tmp" / written.name in synced or (
            written in synced), f"{written.name} was not fsynced"
    assert checkpoints in synced
    assert any(p.parent == checkpoints and ".latest.json" in p.name for p in synced)
    assert (checkpoints / "latest.json").read_text() == '{"step": 1, "path": "step-0000001"}'
