"""Fine-tuning settings and presets.

Qt-free and torch-free: the GUI and the CLI choose settings here, the training worker
receives them as JSON in the run folder (``run.json``), so a run's settings always lie
next to its outputs. Validation lives in ``__post_init__`` so a bad value is refused
where it is typed, not twenty minutes into a run.

Each field says what it means and what values it takes as data (:class:`Knob`, in the
field's metadata): the Advanced panel's labels, tooltips and spin box ranges are built
from it (in a frozen build too, where no source is left to read docstrings from), and
``__post_init__`` checks the same bounds, so the form and the engine cannot disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from app.errors import ExitCode, HearthError
from app.finetune.fidelity import FidelityThresholds
from app.machine.profile import Machine

PRESETS = ("quick", "balanced", "thorough", "facts")
PRESET_LABELS = {"facts": "Learn facts"}
"""How a preset is named to the person (the others: their name, capitalised)."""
MLP_MODULES = ("gate_proj", "up_proj", "down_proj", "gate_up_proj")
"""The MLP projections of every supported family (Phi-3 fuses gate and up): where LoRA
learns new facts with the least change elsewhere (Teach's measurements)."""
QUANT_TYPES = ("q8_0", "q4_k_m", "f16")
KNOB = "knob"  # the metadata key of a field's Knob


class SettingsError(HearthError, ValueError):
    """A setting outside what it may be; the message names it and its range."""

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class Knob:
    """What a person is told about a setting, and the values it may take."""

    label: str
    help: str
    low: float | None = None
    high: float | None = None
    above: bool = False
    """``low`` itself is refused (the value must be above it)."""
    below: bool = False
    """``high`` itself is refused."""
    hint: str = ""
    """Said after the range when a value is refused."""
    what: str = ""
    """How a refusal names it, where the label does not read as a name."""

    def refusal(self, value: float) -> str | None:
        """Why ``value`` is refused, or None."""
        low_ok = self.low is None or (value > self.low if self.above else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.below else value <= self.high)
        if low_ok and high_ok:
            return None
        if self.low is not None and self.high is not None and not (self.above or self.below):
            where = f"between {_number(self.low)} and {_number(self.high)}"
        else:
            where = " and ".join(part for part in (
                "" if self.low is None else f"{'above' if self.above else 'at least'} "
                f"{_number(self.low)}",
                "" if self.high is None else f"{'below' if self.below else 'at most'} "
                f"{_number(self.high)}") if part)
        first, _, rest = self.label.partition(" ")
        what = self.what or (first if any(c.isupper() for c in first[1:]) else first.lower()
                             ) + (f" {rest}" if rest else "")
        return f"{what} must be {where}" + (f" ({self.hint})" if self.hint else "")


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def setting(default: Any, label: str, help: str, low: float | None = None,
            high: float | None = None, **bounds: Any) -> Any:
    """A settings field with its :class:`Knob`."""
    return field(default=default,
                 metadata={KNOB: Knob(label, " ".join(help.split()), low, high, **bounds)})


def knobs(cls: type) -> dict[str, Knob]:
    """Each field's Knob, by name, in the dataclass's order."""
    return {f.name: f.metadata[KNOB] for f in fields(cls) if KNOB in f.metadata}


def _check_bounds(settings: Any) -> None:
    for name, knob in knobs(type(settings)).items():
        value = getattr(settings, name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            refusal = knob.refusal(value)
            if refusal is not None:
                raise SettingsError(refusal)


@dataclass
class LoraSettings:
    """Everything that decides what a LoRA run learns; saved with the run."""

    rank: int = setting(16, "LoRA rank", """LoRA rank r: the width of the low-rank update
        B@A. Higher learns more, costs more.""", 1, 1024)
    alpha: float = setting(32.0, "Alpha", """LoRA scaling numerator: the update is scaled
        by alpha / rank.""", 0, 4096, above=True)
    dropout: float = setting(0.0, "Dropout", """Dropout on the LoRA input; 0 is fastest and
        fine for small datasets.""", 0, 1, below=True)
    target_modules: list[str] | None = setting(None, "Target modules", """Names of the
        linear layers to adapt; empty means every linear projection of every transformer
        block (attention and MLP), but never the embeddings or the output head.""")
    layer_share: float = setting(1.0, "Share of layers (top)", """The share of the decoder's
        layers LoRA adapts, counted from the top: 1.0 all of them; 0.5 the upper half
        (where edits of facts stay local, LocFT-BF).""", 0, 1, above=True)
    learning_rate: float = setting(2e-4, "Learning rate", """Peak learning rate, reached
        after warmup and then decayed along a cosine.""", 0, 1, above=True, below=True,
        hint="typical: 1e-4 to 5e-4")
    warmup_ratio: float = setting(0.05, "Warmup ratio", """Fraction of the optimizer steps
        spent warming the learning rate up from zero.""", 0, 1, below=True)
    min_lr_ratio: float = setting(0.1, "Final LR ratio", """The cosine decays to this
        fraction of the peak learning rate, not to zero.""", 0, 1)
    weight_decay: float = setting(0.0, "Weight decay", """AdamW weight decay on the LoRA
        weights.""", 0, 10)
    epochs: float = setting(3.0, "Epochs", """Passes over the training records (ignored when
        max steps is set).""", 0, 1000, above=True)
    max_steps: int | None = setting(None, "Max steps", """Stop after this many optimizer
        steps instead of a number of epochs.""", 1, 1_000_000)
    batch_size: int = setting(4, "Batch size", """Records per micro-batch; they are packed
        into one row, so no padding is wasted.""", 1, 4096)
    grad_accumulation: int = setting(1, "Gradient accumulation", """Micro-batches per
        optimizer step (effective batch = batch size x this).""", 1, 4096)
    max_seq_len: int = setting(1024, "Max sequence length", """Longer records are truncated
        to this many tokens, and the count is reported.""", 16, 131072)
    seed: int = setting(0, "Seed", """Seeds the data order, the validation split, LoRA's
        initialisation and dropout.""", 0, 2**31 - 1)
    validation_fraction: float = setting(0.1, "Validation fraction", """Share of the records
        held out for validation loss (at least one record).""", 0, 1, above=True,
        below=True)
    eval_every: int = setting(0, "Eval every", """Measure validation loss every N steps; 0
        picks about ten times per run.""", 0, 1_000_000)
    checkpoint_every: int = setting(0, "Checkpoint every", """Save a resumable checkpoint
        every N steps; 0: after every two minutes of training.""", 0, 1_000_000)
    max_grad_norm: float = setting(1.0, "Gradient clip norm", """Gradients are clipped to
        this norm; 0 disables clipping.""", 0, 1000)

    def __post_init__(self) -> None:
        _check_bounds(self)
        if self.target_modules is not None and not self.target_modules:
            raise SettingsError("target modules must name at least one layer (or be None)")

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

    quant: str = setting("q8_0", "Quantization", """Quantization of the exported GGUF: q8_0
        (default, near-lossless), q4_k_m, f16.""")
    out_name: str | None = setting(None, "Output model name", """Library name of the
        fine-tuned model; empty derives one from the base and run.""")
    fidelity_samples: int = setting(4, "Fidelity samples", """Validation records compared
        between PyTorch and llama.cpp after export.""", 1, 1000)
    gguf: bool = setting(True, "Export a GGUF model", """Merge and export a GGUF; off keeps
        only the LoRA adapter (nothing to chat with, but a much shorter run end).""")
    live: bool = setting(False, "Live adapter", """Keep the result as a GGUF adapter that
        chat applies live on the base: no merge and no second quantization, so a run ends
        minutes sooner and switching is instant. llama.cpp still checks base + adapter
        against PyTorch (the same gate). One click (hearth teach --merge) merges it into
        the weights later. Teach versions use it.""")
    min_top1_agreement: float = setting(
        FidelityThresholds.min_top1_agreement, "Export gate: top-1 agreement at least",
        """The export gate: least share of next tokens on which llama.cpp's export and
        PyTorch's trained model agree.""", 0, 1, what="the export gate's top-1 agreement")
    max_relative_logit_diff: float = setting(
        FidelityThresholds.max_relative_logit_diff, "Export gate: logit difference at most",
        """The export gate: most difference between the export's logits and PyTorch's, as
        a share of the largest logit.""", 0, 1, what="the export gate's logit difference")
    max_loss_gap: float = setting(
        FidelityThresholds.max_loss_gap, "Export gate: quantized loss gap at most",
        """The export gate: most validation loss the quantized model may add (plus 10 % of
        the trained model's loss).""", 0, 10, what="the export gate's loss gap")

    def thresholds(self) -> FidelityThresholds:
        """The export gate (:mod:`app.finetune.fidelity`) these settings ask for."""
        return FidelityThresholds(min_top1_agreement=self.min_top1_agreement,
                                  max_relative_logit_diff=self.max_relative_logit_diff,
                                  max_loss_gap=self.max_loss_gap)

    def __post_init__(self) -> None:
        _check_bounds(self)
        if self.quant not in QUANT_TYPES:
            raise SettingsError(f"unknown quantization {self.quant!r}; choose one of "
                                f"{', '.join(QUANT_TYPES)}")


def preset(name: str, n_records: int, machine: Machine | None = None) -> LoraSettings:
    """Settings for ``name`` chosen from the dataset's size and the machine.

    Small datasets need more passes to be learned (and cannot overfit much in a few
    hundred steps); large ones need fewer. Without a GPU the batch and sequence length
    stay small so that a CPU run finishes in minutes, not hours.
    """
    if name not in PRESETS:
        raise SettingsError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
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
