"""Hand-off: a library model written out for the engine a person moves on to.

People who outgrow one machine move to Ollama, vLLM or TGI, or back to transformers.
Each format is written into a folder of the person's choosing, never over a file that
is already there:

- ``gguf``: the model file itself (llama.cpp, LM Studio, Jan, koboldcpp).
- ``ollama``: the GGUF and a ``Modelfile`` beside it: ``FROM``, the model's stop
  tokens, the sampling settings Hearth keeps for it, and a system prompt if given.
  ``ollama create NAME -f Modelfile`` in that folder imports it.
- ``peft``: the LoRA adapter of a Hearth fine-tune (``adapter_config.json`` +
  ``adapter_model.safetensors``), which peft, vLLM (``--lora-modules``) and TGI
  (``LORA_ADAPTERS``) load on top of the base model.
- ``safetensors``: the merged model with its config and tokenizer for transformers.
  It needs PyTorch, so a worker process (:mod:`backends.export.handoff_worker`) writes
  it, from the unquantized base plus the adapter rather than from the quantized GGUF.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from app.atomic import atomic_write_text
from app.chat.template_choice import FAMILIES, choose_template, end_of_turn
from app.errors import ExitCode, HearthError
from app.inference.protocol import SamplingParams
from app.models.gguf_file import GGUFError, read_gguf
from app.models.gguf_vocab import token_ids, token_texts
from app.models.library import ModelRecord
from app.workers.spawn import run_module


class HandoffFormat(StrEnum):
    GGUF = "gguf"
    OLLAMA = "ollama"
    PEFT = "peft"
    SAFETENSORS = "safetensors"


class HandoffError(HearthError, ValueError):
    """The model cannot be written in that format; the message says why and what to do."""

    exit_code = ExitCode.BAD_INPUT


@dataclass
class HandoffResult:
    folder: Path
    files: list[Path] = field(default_factory=list)
    how_to_use: str = ""


def export_model(record: ModelRecord, to_dir: Path, fmt: HandoffFormat,
                 sampling: SamplingParams, system: str = "") -> HandoffResult:
    """Write ``record`` into ``to_dir`` as ``fmt``; nothing existing is overwritten."""
    to_dir = Path(to_dir)
    if fmt in (HandoffFormat.GGUF, HandoffFormat.OLLAMA) and record.live_only:
        raise HandoffError(f"{record.name} is kept as an adapter applied live on its base, "
                           "so there is no model file to hand off yet: merge it first "
                           f"(“Merge” in Teach's versions, or hearth teach --merge {record.name})"
                           ", or export it as peft or safetensors")
    to_dir.mkdir(parents=True, exist_ok=True)
    if fmt is HandoffFormat.GGUF:
        gguf = _copy_new(record.path, to_dir / f"{record.name}.gguf")
        return HandoffResult(to_dir, [gguf], f"llama.cpp: llama-cli -m {gguf}")
    if fmt is HandoffFormat.OLLAMA:
        return _ollama(record, to_dir, sampling, system)
    if fmt is HandoffFormat.PEFT:
        return _peft(record, to_dir)
    return _safetensors(record, to_dir)


def _copy_new(source: Path, target: Path) -> Path:
    if target.exists():
        raise HandoffError(f"{target} already exists; choose another folder or remove it")
    partial = target.with_name(target.name + ".part")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise HandoffError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


# ------------------------------------------------------------------------- Ollama


def modelfile_text(gguf_name: str, stops: list[str], sampling: SamplingParams,
                   system: str = "") -> str:
    """An Ollama Modelfile; every string is quoted so that no value can add a line."""
    lines = [f"FROM ./{_quoted_path(gguf_name)}", ""]
    for stop in stops:
        lines.append(f"PARAMETER stop {_quoted(stop)}")
    lines += [f"PARAMETER temperature {sampling.temperature:g}",
              f"PARAMETER top_p {sampling.top_p:g}",
              f"PARAMETER top_k {sampling.top_k}",
              f"PARAMETER min_p {sampling.min_p:g}",
              f"PARAMETER repeat_penalty {sampling.repeat_penalty:g}",
              f"PARAMETER num_predict {sampling.max_tokens}"]
    if sampling.seed is not None:
        lines.append(f"PARAMETER seed {sampling.seed}")
    if system.strip():
        lines += ["", f"SYSTEM {_quoted(system)}"]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    """A Modelfile string: JSON escaping is what Ollama's parser reads back."""
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise HandoffError("a stop string or the system prompt holds control characters, "
                           "which a Modelfile cannot carry")
    return json.dumps(text, ensure_ascii=False)


def _quoted_path(name: str) -> str:
    if any(c in name for c in "\n\r\"\\ ") or name.startswith("-"):
        raise HandoffError(f"the file name {name!r} cannot be written in a Modelfile")
    return name


def model_stops(path: Path) -> list[str]:
    """The texts of the model's end-of-turn and end-of-text tokens, from its GGUF.

    A base without a chat template (Gemma 3 270M) is spoken to, and taught, in its
    family's turns: the family's end of turn stops it too, or a taught answer ends only
    at EOS, which such a model never learned to say after a turn.
    """
    try:
        info = read_gguf(path)
        meta = info.metadata
        found = [meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("eot", "eos")]
        ids = [i for i in found if isinstance(i, int) and not isinstance(i, bool)]
        texts = token_texts(path, ids)
        file_template = meta.get("tokenizer.chat_template")
        markers = {m for f in FAMILIES.values() for m in f.markers}
        present = set(token_ids(path, markers)) if not file_template else set()
    except GGUFError as exc:
        raise HandoffError(str(exc)) from exc
    stops: list[str] = []
    template = choose_template(file_template if isinstance(file_template, str) else None,
                               str(meta.get("general.architecture", "")),
                               lambda token: token in present)
    for text in [*(texts.get(tid, "") for tid in ids), end_of_turn(template) or ""]:
        if text and text not in stops:
            stops.append(text)
    return stops


def _ollama(record: ModelRecord, to_dir: Path, sampling: SamplingParams,
            system: str) -> HandoffResult:
    modelfile = to_dir / "Modelfile"
    if modelfile.exists():
        raise HandoffError(f"{modelfile} already exists; choose another folder or remove it")
    text = modelfile_text(f"{record.name}.gguf", model_stops(record.path), sampling, system)
    gguf = _copy_new(record.path, to_dir / f"{record.name}.gguf")
    atomic_write_text(modelfile, text)
    return HandoffResult(to_dir, [gguf, modelfile],
                         f"cd {to_dir} && ollama create {record.name} -f Modelfile")


# --------------------------------------------------------------------------- PEFT


def _adapter_dir(record: ModelRecord) -> Path:
    adapter = record.provenance.adapter_dir if record.source == "finetune" else None
    if not adapter:
        raise HandoffError(f"{record.name} was not fine-tuned in Hearth, so it has no LoRA "
                           "adapter; export it as gguf, ollama or safetensors instead")
    folder = Path(adapter)
    if not (folder / "adapter_model.safetensors").is_file():
        raise HandoffError(f"the adapter of {record.name} is gone from {folder}; its run "
                           "may have been deleted")
    return folder


def _peft(record: ModelRecord, to_dir: Path) -> HandoffResult:
    source = _adapter_dir(record)
    target = to_dir / f"{record.name}-lora"
    if target.exists():
        raise HandoffError(f"{target} already exists; choose another folder or remove it")
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        shutil.copyfile(source / "adapter_model.safetensors",
                        partial / "adapter_model.safetensors")
        config = json.loads((source / "adapter_config.json").read_text("utf-8"))
        # The base is named for the person (the file it was trained on), not a temporary
        # folder the trainer loaded it from.
        config["base_model_name_or_path"] = record.provenance.base_model or ""
        (partial / "adapter_config.json").write_text(json.dumps(config, indent=2), "utf-8")
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise HandoffError(f"cannot write the adapter folder {target}: {exc}") from exc
    base = record.provenance.base_path or "the base model"
    return HandoffResult(to_dir, [target / "adapter_config.json",
                                  target / "adapter_model.safetensors"],
                         f"load it on top of {base} (same weights): "
                         f"PeftModel.from_pretrained(base_model, '{target}')")


# -------------------------------------------------------------------- safetensors


def _safetensors(record: ModelRecord, to_dir: Path) -> HandoffResult:
    target = to_dir / record.name
    if target.exists():
        raise HandoffError(f"{target} already exists; choose another folder or remove it")
    if record.source == "finetune":
        base = Path(record.provenance.base_path or "")
        adapter: Path | None = _adapter_dir(record)
        if not base.is_file():
            raise HandoffError(f"the base model of {record.name} ({base}) is gone, and the "
                               "merged safetensors are rebuilt from it")
    else:
        base, adapter = record.path, None
    args = ["--base", str(base), "--out", str(target)]
    if adapter is not None:
        args += ["--adapter", str(adapter)]
    proc = run_module("backends.export.handoff_worker", args)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise HandoffError(f"writing safetensors failed: {last[-400:]}")
    files = sorted(p for p in target.iterdir() if p.is_file())
    return HandoffResult(to_dir, files,
                         f"AutoModelForCausalLM.from_pretrained('{target}')")
