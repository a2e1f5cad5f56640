"""How long the phases of a run took on this machine, to predict the next run.

Qt-free and torch-free: the training worker records the figures at the end of each run
and predicts its own next estimate from them; Teach's estimate before a run
(:mod:`app.teach.estimate`) reads the same file when no teach run was measured yet.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from app.finetune.estimate import EXPORT_S_PER_GPARAM
from app.finetune.settings import ExportSettings
from app.paths import HearthHome
from app.side_files import load_json, save_json
from app.teach.records import TeachSpec


def phase_times_file(home: HearthHome) -> Path:
    """Where a home keeps them (the worker finds it beside the run's base-model cache)."""
    return home.base_model_cache.parent / "phase_times.json"


def _by_device(raw: Any) -> dict[str, Any]:
    """The file's figures per device; TypeError when it is not what Hearth wrote."""
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise TypeError("it does not hold figures per device")
    return raw


class PhaseTimes:
    """How long the phases after training took on this machine, to predict the next run.

    Kept per device in ``<home>/cache/phase_times.json``: export seconds per billion
    parameters, and gate seconds per prompt it replays. Without a record, a first guess.
    """

    # First guesses, replaced by this machine's own figures. The export's (merge, F16,
    # quantize, llama.cpp check) is the estimate's own EXPORT_S_PER_GPARAM for the
    # quantization: a 1B model's q4_k_m export took 213 s of its 350 s run, and half
    # that, as this class once guessed, made the worker's figure 0.60 of the actual;
    # q8_0 costs about half of q4_k_m. The gate's was measured with the starter model
    # (24 s over 80 prompts).
    GATE_S_PER_PROMPT = 0.3

    def __init__(self, path: Path, device: str) -> None:
        self.path = path
        self.device = device
        # A damaged file is kept aside (app.side_files): only the measured rates are lost.
        self.data: dict[str, Any] = load_json(path, _by_device, "Hearth estimates from "
                                              "its defaults until the next run", None) or {}
        mine = self.data.get(device, {})
        rates = mine.get("export_s_per_gparam")  # per quantization (a float: older file)
        self.export_rates: dict[str, float] = rates if isinstance(rates, dict) else {}
        self.gate_rate = float(mine.get("gate_s_per_prompt", self.GATE_S_PER_PROMPT))
        # Per compute dtype: how much faster than the formula (already stretched by the
        # probe's busy factor) the last run on this machine trained. A ratio, not a
        # speed, so that a 135M run's figure still fits a 1B model the next time.
        factors = mine.get("train_speed_factor")
        self.speed_factor: dict[str, float] = factors if isinstance(factors, dict) else {}
        self.predicted: tuple[str, float] | None = None  # (dtype, formula training seconds)
        rate = mine.get("recall_s_per_gparam")  # the recall check's (app.finetune.recall)
        self.recall_rate = float(rate) if isinstance(rate, int | float) else None

    @classmethod
    def of_machine(cls, path: Path, gpu: bool) -> PhaseTimes:
        """This machine's figures, read outside the worker (which names its device from
        torch): the GPU's when there is one, else the CPU's."""
        times = cls(path, "cpu")
        if gpu:
            seen = [d for d in times.data if str(d).startswith("cuda")]
            if seen:
                times = cls(path, seen[0])
        return times

    def training(self, formula_seconds: float, dtype: str) -> float:
        """Training time: the formula's, scaled by how the last run here compared."""
        self.predicted = (dtype, formula_seconds)
        factor = self.speed_factor.get(dtype)
        return formula_seconds / float(factor) if factor else formula_seconds

    @staticmethod
    def _gate_prompts(teach: TeachSpec | None) -> int:
        return teach.gate_prompts if teach else 0

    def after_training(self, n_params: int, export: ExportSettings,
                       teach: TeachSpec | None, gguf_base: bool) -> float:
        seconds = self.gate_rate * self._gate_prompts(teach)
        if export.gguf and gguf_base and not export.live:  # a live result is not merged
            rate = self.export_rates.get(export.quant, EXPORT_S_PER_GPARAM[export.quant])
            seconds += float(rate) * n_params / 1e9
        return seconds

    def record(self, phases: list[tuple[str, float]], end: float, n_params: int,
               export: ExportSettings, teach: TeachSpec | None, exported: bool,
               trained_tokens: int = 0) -> dict[str, float]:
        """Durations of this run's phases; remembers the rates for the next estimate."""
        spans: dict[str, float] = {}
        for (name, began), (_, until) in zip(phases, [*phases[1:], ("end", end)],
                                              strict=True):
            spans[name] = round(spans.get(name, 0.0) + until - began, 1)
        mine = self.data.setdefault(self.device, {})
        mine.pop("train_flops_per_s", None)  # the absolute speed kept before this ratio
        if trained_tokens and spans.get("training") and self.predicted:
            dtype, predicted = self.predicted
            mine.setdefault("train_speed_factor", {})[dtype] = predicted / spans["training"]
        if teach and "checking" in spans:
            mine["gate_s_per_prompt"] = spans["checking"] / max(1, self._gate_prompts(teach))
        if "recall" in spans:
            mine["recall_s_per_gparam"] = spans["recall"] / max(1e-3, n_params / 1e9)
        if exported:
            post = sum(spans.get(k, 0.0) for k in ("saving", "merging", "exporting",
                                                   "quantizing"))
            rates = mine.get("export_s_per_gparam")
            if not isinstance(rates, dict):
                rates = mine["export_s_per_gparam"] = {}
            rates[export.quant] = post / max(1e-3, n_params / 1e9)
        with contextlib.suppress(OSError):
            save_json(self.path, self.data)
        return spans
