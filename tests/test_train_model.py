"""The training worker's base model comes from the GGUF alone (issue 11 F17)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def test_stray_files_next_to_the_gguf_do_not_replace_its_tokenizer(
        tmp_path: Path, tiny_gguf: Path) -> None:
    """A Downloads folder may hold anyone's tokenizer.json and config.json; transformers
    read them from the GGUF's folder and they replaced the GGUF's own vocabulary."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from app.models.gguf_file import read_gguf
    from backends.training.base_model import load_base

    folder = tmp_path / "Downloads"
    folder.mkdir()
    gguf = folder / "model.gguf"
    shutil.copyfile(tiny_gguf, gguf)
    Tokenizer(WordLevel({"STRAY": 0, "[UNK]": 1}, unk_token="[UNK]")).save(
        str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "STRAY", "chat_template": "STRAY {{ messages }}"}))
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "llama", "num_hidden_layers": 5,
         "auto_map": {"AutoModelForCausalLM": "evil.Evil"}}))
    (folder / "evil.py").write_text("raise SystemExit('remote code ran')\n")

    base = load_base(gguf, cache_dir=None)
    vocab = base.tokenizer.get_vocab()
    assert "STRAY" not in vocab
    assert len(base.tokenizer) == read_gguf(gguf).vocab_size
    assert base.eos_token == "<|im_end|>"
    assert base.model.config.num_hidden_layers == 2
    assert base.template.source == "gguf"
