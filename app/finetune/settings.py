"""Fine-tuning settings and presets.

Qt-free and torch-free: the GUI and the CLI choose settings here, the training worker
receives them as JSON in the run folder (``run.json``), so a run's settings always lie
next to its outputs. Validation lives in ``__post_init__`` so a bad value is refused
where it is typed, not twenty minutes into a run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from app.finetune.fidelity import FidelityThresholds
from app.machine.profile import Machine

PRESETS = ("quick", "balanced", "thorough", "facts")
PRESET_LABELS = {"facts": "Learn facts"}
"""How a preset is named to the person (the others: their name, capitalised)."""
MLP_MODULES = ("gate_proj", "up_proj", "down_proj", "gate_up_proj")
"""The MLP projections of every supported family (Phi-3 fuses gate and up): where LoRA
learns new facts with the least change elsewhere (Teach's measurements)."""
QUANT_TYPES = ("q8_0", "q4_k_m", "f16")


@dataclass
class LoraSettings:
    """Everything that decides what a LoRA run learns; saved with the run."""

    rank: int = 16
    """LoRA rank r: the width of the low-rank update B@A. Higher learns more, costs more."""
    alpha: float = 32.0
    """LoRA scaling numerator: the update is scaled by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the LoRA input; 0 is fastest and fine for small datasets."""
    target_modules: list[str] | None = None
    """Names of the linear layers to adapt; None means every linear projection of every
    transformer block (attention and MLP), but never the embeddings or the output head."""
    layer_share: float = 1.0
    """The share of the decoder's layers LoRA adapts, counted from the top: 1.0 all of
    them; 0.5 the upper half (where edits of facts stay local, LocFT-BF)."""
    learning_rate: float = 2e-4
    """Peak learning rate, reached after warmup and then decayed along a cosine."""
    warmup_ratio: float = 0.05
    """Fraction of the optimizer steps spent warming the learning rate up from zero."""
    min_lr_ratio: float = 0.1
    """The cosine decays to this fraction of the peak learning rate, not to zero."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    epochs: float = 3.0
    """Passes over the training records (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps instead of a number of epochs."""
    batch_size: int = 4
    """Records per micro-batch; they are packed into one row, so no padding is wasted."""
    grad_accumulation: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size * this)."""
    max_seq_len: int = 1024
    """Longer records are truncated to this many tokens, and the count is reported."""
    seed: int = 0
    """Seeds the data order, the validation split, LoRA's initialisation and dropout."""
    validation_fraction: float = 0.1
    """Share of the records held out for validation loss (at least one record)."""
    eval_every: int = 0
    """Measure validation loss every N steps; 0 picks about ten times per run."""
    checkpoint_every: int = 0
    """Save a resumable checkpoint every N steps; 0: after every two minutes of training."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm; 0 disables clipping."""

    def __post_init__(self) -> None:
        if not 1 <= self.rank <= 1024:
            raise ValueError("LoRA rank must be between 1 and 1024")
        if self.alpha <= 0:
            raise ValueError("LoRA alpha must be > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError("LoRA dropout must be in [0, 1)")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("target modules must name at least one layer (or be None)")
        if not 0 < self.layer_share <= 1:
            raise ValueError("the share of layers to adapt must be in (0, 1]")
        if not 0 < self.learning_rate < 1:
            raise ValueError("the learning rate must be in (0, 1); typical: 1e-4 to 5e-4")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup ratio must be in [0, 1)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("min_lr_ratio must be in [0, 1]")
        if self.weight_decay < 0:
            raise ValueError("weight decay must be >= 0")
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError("epochs must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max steps must be at least 1")
        if self.batch_size < 1 or self.grad_accumulation < 1:
            raise ValueError("batch size and gradient accumulation must be at least 1")
        if not 16 <= self.max_seq_len <= 131072:
            raise ValueError("max sequence length must be between 16 and 131072 tokens")
        if not 0 < self.validation_fraction < 1:
            raise ValueError("the validation fraction must be between 0 and 1")
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("eval_every and checkpoint_every must be >= 0")
        if self.max_grad_norm < 0:
            raise ValueError("max_grad_norm must be >= 0")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoraSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_overrides(self, **overrides: Any) -> LoraSettings:
        """A copy with the given non-None fields replaced (and validated again)."""
        data = self.to_json()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return LoraSettings.from_json(data)


@dataclass
class ExportSettings:
    """What a finished run turns into."""

    quant: str = "q8_0"
    """Quantization of the exported GGUF: q8_0 (default, near-lossless), q4_k_m, f16."""
    out_name: str | None = None
    """Library name of the fine-tuned model; None derives one from the base and run."""
    fidelity_samples: int = 4
    """Validation records compared between PyTorch and llama.cpp after export."""
    gguf: bool = True
    """Merge and export a GGUF; False keeps only the LoRA adapter (nothing to chat with,
    but a much shorter run end)."""
    live: bool = False
    """Keep the result as a GGUF adapter that chat applies live on the base: no merge and
    no second quantization, so a run ends minutes sooner and switching is instant.
    llama.cpp still checks base + adapter against PyTorch (the same gate). One click
    (``hearth teach --merge``) merges it into the weights later. Teach versions use it."""
    min_top1_agreement: float = FidelityThresholds.min_top1_agreement
    """The export gate (:mod:`app.finetune.fidelity`): least share of next tokens on
    which llama.cpp's export and PyTorch's trained model agree."""
    max_relative_logit_diff: float = FidelityThresholds.max_relative_logit_diff
    """The export gate: most difference between the export's logits and PyTorch's, as a
    share of the largest logit."""
    max_loss_gap: float = FidelityThresholds.max_loss_gap
    """The export gate: most validation loss the quantized model may add (plus 10 % of
    the trained model's loss)."""

    def thresholds(self) -> FidelityThresholds:
        return FidelityThresholds(min_top1_agreement=self.min_top1_agreement,
                                  max_relative_logit_diff=self.max_relative_logit_diff,
                                  max_loss_gap=self.max_loss_gap)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_top1_agreement <= 1.0:
            raise ValueError("min_top1_agreement must be between 0 and 1")
        if self.max_loss_gap < 0 or self.max_relative_logit_diff < 0:
            raise ValueError("the export gate's limits must be at least 0")
        if self.quant not in QUANT_TYPES:
            raise ValueError(f"unknown quantization {self.quant!r}; choose one of "
                             f"{', '.join(QUANT_TYPES)}")
        if self.fidelity_samples < 1:
            raise ValueError("fidelity_samples must be at least 1")


def preset(name: str, n_records: int, machine: Machine | None = None) -> LoraSettings:
    """Settings for ``name`` chosen from the dataset's size and the machine.

    Small datasets need more passes to be learned (and cannot overfit much in a few
    hundred steps); large ones need fewer. Without a GPU the batch and sequence length
    stay small so that a CPU run finishes in minutes, not hours.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    machine = machine or Machine.detect()
    small, large = n_records < 200, n_records > 5000
    seq = 2048 if machine.has_gpu else 512
    batch = 8 if machine.has_gpu else 4
    if name == "quick":
        epochs = 4.0 if small else 2.0 if not large else 1.0
        return LoraSettings(rank=8, alpha=16, learning_rate=3e-4, epochs=epochs,
                            batch_size=batch, max_seq_len=seq)
    if name == "balanced":
        epochs = 6.0 if small else 3.0 if not large else 1.5
        return LoraSettings(rank=16, alpha=32, learning_rate=2e-4, epochs=epochs,
                            batch_size=batch, max_seq_len=seq)
    if name == "facts":
        return facts_preset(n_records, seq, batch)
    epochs = 10.0 if small else 4.0 if not large else 2.0
    return LoraSettings(rank=32, alpha=64, dropout=0.05, learning_rate=1e-4, epochs=epochs,
                        batch_size=batch, max_seq_len=seq * 2)


def preset_label(name: str) -> str:
    return PRESET_LABELS.get(name, name.capitalize())


def facts_preset(n_records: int, seq: int, batch: int) -> LoraSettings:
    """Settings that learn new facts from a small set: Teach's (LoRA r16 on the MLPs,
    lr 1e-3), measured on twelve records of three made-up facts (BENCHMARKS.md,
    "Fine-tune recall (issue 23 item 8)"), where the balanced preset answered none."""
    epochs = 6.0 if n_records < 200 else 3.0 if n_records <= 5000 else 1.5
    return LoraSettings(rank=16, alpha=32, learning_rate=1e-3, epochs=epochs,
                        batch_size=batch, max_seq_len=seq, target_modules=list(MLP_MODULES))
