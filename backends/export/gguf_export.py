"""Writing a merged model back into the base model's GGUF layout (F16).

The new file is the base GGUF with new weights: every metadata entry is copied over
(tokenizer vocabulary, merges and token types, chat template, BOS/EOS/EOT ids, rope
settings, ``general.*``) with only the name and file type changed, and every tensor is
written under the base file's own name, in its order. A model that loses its chat
template or end-of-turn token babbles; copying everything is how we avoid that.

Only architectures in :mod:`app.models.architectures` are written: llama.cpp's converter
transforms some tensors (llama's Q/K row permutation, Gemma's ``1 + w`` norms) and
transformers' GGUF loader undoes that on load, so the export applies each row's
transform again. An architecture whose transforms are not known is refused rather than
written with wrong weights. The export is round-trip tested for every row
(``tests/test_architectures.py``): llama.cpp's logits of the written file match PyTorch's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from app.models.architectures import Architecture, UnsupportedArchitecture, architecture

_SKIP_KEYS = ("GGUF.version", "GGUF.tensor_count", "GGUF.kv_count")


class ExportError(ValueError):
    """The merged model cannot be written as GGUF; the message says why."""


def permute_qk(weight: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's row permutation of Q/K (inverse of transformers' reverse_permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


@dataclass(frozen=True)
class BaseLayout:
    """What writing tensors in a base file's own layout needs to know about it."""

    arch: str
    row: Architecture
    tmap: gguf.TensorNameMap
    n_head: int
    n_head_kv: int

    def permute_rows(self, gguf_name: str, rows: np.ndarray) -> np.ndarray:
        """``rows`` in llama.cpp's Q/K row order for this architecture (else as they are)."""
        if not self.row.permute_qk or rows.ndim != 2:
            return rows
        if gguf_name.endswith("attn_q.weight"):
            return permute_qk(rows, self.n_head, self.n_head)
        if gguf_name.endswith("attn_k.weight"):
            return permute_qk(rows, self.n_head, self.n_head_kv)
        return rows


def read_layout(reader: gguf.GGUFReader) -> BaseLayout:
    """The base file's layout; :class:`ExportError` for an architecture not in the table."""
    arch = reader.fields["general.architecture"].contents()
    try:
        row = architecture(arch)
    except UnsupportedArchitecture as exc:
        raise ExportError(str(exc)) from exc
    try:
        model_arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
    except KeyError as exc:
        raise ExportError(f"the gguf package does not know the architecture {arch!r}") from exc
    n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
    kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
    n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
    tmap = gguf.get_tensor_name_map(model_arch,
                                    int(reader.fields[f"{arch}.block_count"].contents()))
    return BaseLayout(arch, row, tmap, n_head, n_head_kv)


_PHI3_TOKENS = ("</s>", "<unk>", "<s>", "<|endoftext|>")


def _loadable_name(name: str, reader: gguf.GGUFReader) -> str:
    """``name``, unless llama.cpp would refuse to load a file of that name.

    llama.cpp gives a model whose ``general.name`` contains "phi3" or "phi-3" Phi-3's
    token attributes, looking up Phi-3's own special tokens by text; a vocabulary
    without them (Phi-4 mini's, a tiny test model's) then fails to load at all.
    """
    lowered = name.lower()
    if "phi3" not in lowered and "phi-3" not in lowered:
        return name
    field = reader.fields.get("tokenizer.ggml.tokens")
    tokens = set(field.contents()) if field is not None else set()
    if all(t in tokens for t in _PHI3_TOKENS):
        return name
    return lowered.replace("phi-3", "phi 3").replace("phi3", "phi 3")


def _copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter, name: str,
                   chat_template: str | None) -> None:
    """Every key of the base but its name and file type; the trained template if it has
    none."""
    for key, field in reader.fields.items():
        if key in _SKIP_KEYS or key in ("general.name", "general.file_type",
                                        "general.architecture"):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    writer.add_name(_loadable_name(name, reader))
    if chat_template and "tokenizer.chat_template" not in reader.fields:
        writer.add_chat_template(chat_template)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)


def export_gguf(base_gguf: str | os.PathLike[str], weights: Mapping[str, torch.Tensor],
                out_path: str | os.PathLike[str], name: str,
                chat_template: str | None = None) -> Path:
    """Write ``weights`` (HF names, merged) as an F16 GGUF shaped like ``base_gguf``.

    ``chat_template`` is written when the base has none: the template the model was
    trained with, so that it chats in the format it learned.
    """
    reader = gguf.GGUFReader(str(base_gguf))
    layout = read_layout(reader)

    by_gguf: dict[str, str] = {}
    for weight in weights:
        mapped = layout.tmap.get_name(weight, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            continue
        by_gguf[mapped] = weight  # get_name keeps the suffix it matched

    out_path = Path(out_path)
    partial = out_path.with_name(out_path.name + ".part")
    writer = gguf.GGUFWriter(str(partial), layout.arch)
    _copy_metadata(reader, writer, name, chat_template)

    written = set()
    for tensor in reader.tensors:
        hf_name = by_gguf.get(tensor.name)
        if hf_name is None:
            # Tensors transformers does not model (e.g. rope frequency tables) are kept
            # exactly as the base file has them.
            writer.add_tensor(tensor.name, np.asarray(tensor.data),
                              raw_shape=list(reversed([int(d) for d in tensor.shape])),
                              raw_dtype=tensor.tensor_type)
            continue
        written.add(hf_name)
        data = weights[hf_name].detach().to(torch.float32).cpu().numpy()
        if layout.row.norm_shift and tensor.name.endswith("norm.weight"):
            data = data + np.float32(layout.row.norm_shift)
        data = layout.permute_rows(tensor.name, data)
        expected = tuple(reversed([int(d) for d in tensor.shape]))
        if tuple(data.shape) != expected:
            raise ExportError(f"{tensor.name}: the merged weight has shape {data.shape}, the "
                              f"base file expects {expected}")
        if data.ndim >= 2:
            writer.add_tensor(tensor.name, data.astype(np.float16))
        else:
            writer.add_tensor(tensor.name, data.astype(np.float32))
    if not written:
        raise ExportError("none of the merged weights matched the base file's tensor names")
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(partial, out_path)
    return out_path
