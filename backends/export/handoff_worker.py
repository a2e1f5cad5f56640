"""Writing a model as a transformers folder (merged safetensors, config, tokenizer).

    python -m backends.export.handoff_worker --base BASE.gguf [--adapter DIR] --out DIR

Run by :mod:`app.models.handoff` in a process of its own, because it needs PyTorch.
The base is loaded the way training loads it (transformers' GGUF loader, no pickles, no
remote code); the adapter, when given, is folded in with peft's own merge. The folder
is written beside its final name and renamed into place, so a failure leaves nothing
that looks finished. Errors end as one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch


def write_folder(base: Path, adapter: Path | None, out: Path) -> Path:
    from peft import PeftModel

    from backends.training.base_model import load_base, save_plain_folder

    loaded = load_base(base, dtype=torch.float32)
    model = loaded.model
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        model = model.merge_and_unload()
    tokenizer = loaded.tokenizer
    if loaded.template.text and not loaded.template.source.startswith("fallback"):
        tokenizer.chat_template = loaded.template.text
    partial = out.with_name(out.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    save_plain_folder(partial, model, tokenizer)
    partial.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="handoff_worker")
    parser.add_argument("--base", required=True, type=Path)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        write_folder(args.base, args.adapter, args.out)
    except Exception as exc:  # reported as one line to the parent
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
