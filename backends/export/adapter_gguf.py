"""Writing a trained LoRA as a GGUF adapter that llama.cpp applies live, without merging.

The format is llama.cpp's own (``convert_lora_to_gguf.py``): ``general.type`` is
``adapter``, ``adapter.type`` is ``lora``, ``adapter.lora.alpha`` holds alpha, and each
adapted weight ``W`` of the base file gets two tensors, ``<W>.lora_a`` (rank x in) and
``<W>.lora_b`` (out x rank), under the base file's tensor name. llama.cpp computes
``W x + (alpha / rank) * B (A x)``.

The base file's rows are not always transformers' rows: llama.cpp's converter permutes
the Q and K rows of llama-family models. A permutation of W's rows is a permutation of
B's rows (``P (W + s B A) = P W + s (P B) A``), so B gets the same permutation here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np
import torch

from backends.export.gguf_export import ExportError, read_layout
from backends.export.merge import adapter_pairs


def export_adapter(base_gguf: str | os.PathLike[str], adapter: Mapping[str, torch.Tensor],
                   alpha: float, out_path: str | os.PathLike[str], name: str) -> Path:
    """Write the PEFT ``adapter`` state dict as a llama.cpp LoRA adapter of ``base_gguf``."""
    reader = gguf.GGUFReader(str(base_gguf))
    layout = read_layout(reader)
    shapes = {t.name: tuple(reversed([int(d) for d in t.shape])) for t in reader.tensors}

    out_path = Path(out_path)
    partial = out_path.with_name(out_path.name + ".part")
    writer = gguf.GGUFWriter(str(partial), layout.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    writer.add_name(name)
    try:
        for hf_name, (a, b) in sorted(adapter_pairs(adapter).items()):
            gguf_name = layout.tmap.get_name(hf_name, try_suffixes=(".weight",))
            if gguf_name is None or gguf_name not in shapes:
                raise ExportError(f"the adapter changes {hf_name}, which the base file "
                                  "does not have")
            a_np = a.detach().to(torch.float32).cpu().numpy()
            b_np = b.detach().to(torch.float32).cpu().numpy()
            if (b_np.shape[0], a_np.shape[1]) != shapes[gguf_name]:
                raise ExportError(f"{gguf_name}: the adapter's shape does not fit the base "
                                  f"weight {shapes[gguf_name]}")
            b_np = layout.permute_rows(gguf_name, b_np)
            stem = gguf_name.removesuffix(".weight")
            writer.add_tensor(f"{stem}.weight.lora_a", np.ascontiguousarray(a_np))
            writer.add_tensor(f"{stem}.weight.lora_b", np.ascontiguousarray(b_np))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, out_path)
    return out_path
