"""A training run's checkpoint: LoRA weights, AdamW's state, the RNG and the step.

All as safetensors + JSON (nothing is pickled), written complete in a temporary folder
and fsynced before ``latest.json`` points at it, so a power cut finds the old checkpoint
or the new one, never empty files. The data order is a pure function of seed and epoch
and the learning rate of the step, so these are all a resumed run needs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from app.atomic import atomic_write_text, fsync_dir, fsync_file


def save(folder: Path, step: int, params: dict[str, torch.Tensor],
         optimizer: torch.optim.Optimizer, device: torch.device,
         progress: dict[str, Any]) -> Path:
    """Write the checkpoint of ``step`` under ``folder``, then point ``latest.json`` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:07d}"
    tmp = folder / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({n: p.detach().cpu().contiguous() for n, p in params.items()},
              str(tmp / "adapter.safetensors"))
    names = list(params)
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        name = names[idx]
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}::{key}"] = value.detach().cpu().reshape(-1).clone()
                scalars.setdefault(name, {})[f"{key}::shape"] = list(value.shape)
            else:
                scalars.setdefault(name, {})[key] = value
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    save_file(rng, str(tmp / "rng.safetensors"))
    meta = {"step": step, **progress, "param_names": names, "optimizer_scalars": scalars,
            "param_groups": [{k: v for k, v in g.items() if k != "params"}
                             for g in state["param_groups"]]}
    (tmp / "state.json").write_text(json.dumps(meta), "utf-8")
    # Everything on disk before latest.json points at it.
    for written in tmp.iterdir():
        fsync_file(written)
    fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    fsync_dir(folder)
    atomic_write_text(folder / "latest.json", json.dumps({"step": step, "path": final.name}))
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load(folder: Path, params: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
         device: torch.device) -> dict[str, Any] | None:
    """Restore the latest checkpoint into ``params`` and ``optimizer``; its state.json
    (step, elapsed, history...), or None when there is none."""
    latest = folder / "latest.json"
    if not latest.exists():
        return None
    where = folder / json.loads(latest.read_text("utf-8"))["path"]
    meta: dict[str, Any] = json.loads((where / "state.json").read_text("utf-8"))
    if meta["param_names"] != list(params):
        raise ValueError("the checkpoint does not belong to this model and settings")
    weights = load_file(str(where / "adapter.safetensors"))
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name].to(param.device, param.dtype))
    tensors = load_file(str(where / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for idx, name in enumerate(meta["param_names"]):
        scalars = meta["optimizer_scalars"].get(name)
        if scalars is None:
            continue
        entry: dict[str, Any] = {}
        for key, value in scalars.items():
            if key.endswith("::shape"):
                tkey = key.removesuffix("::shape")
                tensor = tensors[f"{name}::{tkey}"].reshape(value)
                if tkey != "step":
                    tensor = tensor.to(params[name].device)
                entry[tkey] = tensor
            else:
                entry[key] = value
        state[idx] = entry
    groups = [dict(g, params=list(range(len(params)))) for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    rng = load_file(str(where / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)
    return meta
