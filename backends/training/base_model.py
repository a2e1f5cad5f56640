"""Loading a base model for training: a GGUF from the library, or a safetensors folder.

GGUF files are dequantized through transformers' GGUF loader (which also builds a fast
tokenizer from the vocabulary stored in the file), so a person trains on the very model
they chat with. Folders load only ``*.safetensors`` weights: never pickles, never
``trust_remote_code``. Everything the export needs later (the chat template, the end
of turn, the base GGUF's path) travels in :class:`BaseModel`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.chat.template import ChatTemplate
from app.chat.template_choice import choose_template
from app.models.architectures import gguf_name_of
from app.models.gguf_file import GGUFError, read_gguf
from app.paths import conversion_folder

log = logging.getLogger("hearth.train")


class BaseModelError(ValueError):
    """The base model cannot be trained; the message says why, for a person."""


@dataclass
class BaseModel:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any
    template: ChatTemplate
    eos_token: str
    gguf_path: Path | None
    """The base GGUF (the export copies its metadata); None for a safetensors folder."""


def load_base(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32,
              cache_dir: Path | None = None) -> BaseModel:
    """Load ``path`` for training.

    Converting a GGUF's vocabulary into a fast tokenizer and dequantizing its tensors
    takes tens of seconds; with ``cache_dir`` the result is kept there as a safetensors
    folder (keyed by the file's path, size and mtime) so the next run starts at once.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    quiet = logging.getLogger("transformers")
    quiet.setLevel(logging.ERROR)
    if path.is_file():
        try:
            info = read_gguf(path)
        except GGUFError as exc:
            raise BaseModelError(f"cannot train on {path.name}: {exc}") from exc
        name = path.name
        cached = conversion_folder(path, cache_dir) if cache_dir is not None else None
        try:
            if cached is not None and (cached / "complete").exists():
                tokenizer = AutoTokenizer.from_pretrained(str(cached), trust_remote_code=False)
                model = AutoModelForCausalLM.from_pretrained(
                    str(cached), dtype=dtype, use_safetensors=True, trust_remote_code=False)
            else:
                # Only the GGUF may speak for the model: transformers also reads
                # tokenizer.json, config.json and the like from the folder it is given,
                # so a stray file next to the GGUF (a Downloads folder) would replace
                # its vocabulary. Load from a folder of our own holding only the file.
                with tempfile.TemporaryDirectory(prefix="hearth-gguf-") as clean:
                    _link_or_copy(path, Path(clean) / name)
                    tokenizer = AutoTokenizer.from_pretrained(clean, gguf_file=name,
                                                              trust_remote_code=False)
                    model = AutoModelForCausalLM.from_pretrained(
                        clean, gguf_file=name, dtype=dtype, trust_remote_code=False)
                if cached is not None:
                    _save_cache(cached, model, tokenizer)
        except (ValueError, KeyError, NotImplementedError, OSError) as exc:
            raise BaseModelError(
                f"transformers cannot dequantize {path.name} ({info.architecture}, "
                f"{info.quantization}) for training: {exc}") from exc
        template_text = info.chat_template
        gguf_path: Path | None = path
    elif path.is_dir():
        if not list(path.glob("*.safetensors")):
            raise BaseModelError(f"{path} has no .safetensors weights; Hearth does not load "
                                 "pickled (.bin/.pt) weights")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=dtype, use_safetensors=True, trust_remote_code=False)
        except (ValueError, KeyError, OSError) as exc:
            raise BaseModelError(f"cannot load the model in {path}: {exc}") from exc
        template_text = getattr(tokenizer, "chat_template", None)
        gguf_path = None
    else:
        raise BaseModelError(f"{path} does not exist")
    bos = tokenizer.bos_token or ""
    eos = tokenizer.eos_token or ""
    template = training_template(template_text, model.config, tokenizer, bos, eos)
    if template.source != "gguf":
        log.warning("the base model has no chat template; training with %s (the export "
                    "carries it, so the tuned model chats in the format it learned)",
                    template.source)
    return BaseModel(model=model, tokenizer=tokenizer, template=template, eos_token=eos,
                     gguf_path=gguf_path)


def training_template(text: str | None, config: Any, tokenizer: Any, bos: str, eos: str
                      ) -> ChatTemplate:
    """The file's template, else its family's (as chat picks it), else ChatML.

    Chat may speak to a base model without turns ("raw"), but learning replies needs
    turns with an end the model learns to produce; ChatML is the one any vocabulary
    can spell.
    """
    vocab = tokenizer.get_vocab()
    arch = gguf_name_of(str(getattr(config, "model_type", "")))
    chosen = choose_template(text, arch, lambda t: t in vocab, bos_token=bos, eos_token=eos)
    if chosen.source == "raw":
        return ChatTemplate.from_metadata(None, bos_token=bos, eos_token=eos)
    return chosen


def _link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` as cheaply as the filesystem allows."""
    try:
        os.symlink(source.resolve(), target)
        return
    except OSError:
        pass
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def save_plain_folder(folder: Path, model: Any, tokenizer: Any) -> None:
    """Write ``model`` and ``tokenizer`` as a transformers folder of plain safetensors.

    transformers refuses ``save_pretrained`` on a model loaded from GGUF (it counts as
    quantized), though its weights are dequantized floats; the config is written
    without that mark and the weights with safetensors' own ``save_model``.
    """
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2), "utf-8")
    save_model(model, str(folder / "model.safetensors"))
    tokenizer.save_pretrained(str(folder))


def _save_cache(folder: Path, model: Any, tokenizer: Any) -> None:
    """Publish the dequantized model at ``folder``; a failure only costs the next load.

    Several processes may convert the same base at once (two runs started together, the
    test suite's parallel workers) while others read a finished copy. Each writes a
    folder of its own and renames it into place; a complete copy already there is
    never replaced, since a reader may be loading it, and the copies are the same.
    """
    from safetensors import SafetensorError

    if (folder / "complete").exists():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp",
                                    dir=folder.parent))
    except OSError as exc:
        log.warning("could not cache the converted model: %s", exc)
        return
    try:
        save_plain_folder(tmp, model, tokenizer)
        (tmp / "complete").write_text("ok", "utf-8")
        if folder.exists() and not (folder / "complete").exists():
            # A copy a crash left unfinished: set it aside under a name of its own
            # (atomic), so that the rename below meets no folder, then delete it.
            stale = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".stale",
                                          dir=folder.parent))
            with contextlib.suppress(OSError):
                os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
    except (OSError, SafetensorError) as exc:  # a full disk reaches safetensors as its own
        if not (folder / "complete").exists():  # else another process published first
            log.warning("could not cache the converted model: %s", exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
