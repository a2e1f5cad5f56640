"""Will this run learn new facts? Said before Start, from measured runs.

Given twelve records of three made-up facts, the balanced preset (the default) trained
each record 6 times at learning rate 2e-4, ended at a low loss, and answered none of the
twelve questions afterwards; the "Learn facts" preset (Teach's settings: LoRA on the
MLPs, lr 1e-3, the same 6 passes) answered all twelve, the held-out one included
(BENCHMARKS.md, "Fine-tune recall (issue 23 item 8)"). What a small set of facts needs is
passes times learning rate, so a small chat dataset whose settings give less than the
run that learned is told so before Start, with the preset that does. A large dataset is
not: it has many more steps, and its purpose is more often a style than a fact.
Qt-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.finetune.datasets import Dataset, split_examples
from app.finetune.plan import total_steps
from app.finetune.settings import LoraSettings, preset_label

SMALL = 200
"""Records below which a dataset is "small" (the presets' own boundary)."""
LEARNED_PASSES, LEARNED_LR = 6.0, 1e-3
"""The run that learned: 12 of 12 questions answered (the "Learn facts" preset)."""
MISSED_PASSES, MISSED_LR = 6.0, 2e-4
"""The run that did not: 0 of 12 (the balanced preset, validation loss 1.08)."""
MEASURED = "measured on 3 new facts in 12 records: Balanced answered 0 of 12 questions " \
           "afterwards, Learn facts 12 of 12"
FACTS_PRESET = "facts"


@dataclass(frozen=True)
class Advice:
    """What the plan says about a run that will not learn new facts, and the fix."""

    message: str
    preset: str
    """The preset that learns them (the tab offers it in one click)."""

    @property
    def label(self) -> str:
        return preset_label(self.preset)


def passes(n_train: int, settings: LoraSettings) -> float:
    """How many times the run shows each training record: its epochs, or max_steps'
    worth of them (an epoch is every record once, in micro-batches)."""
    micro_per_epoch = math.ceil(max(1, n_train) / settings.batch_size)
    return total_steps(n_train, settings) * settings.grad_accumulation / micro_per_epoch


def fact_advice(dataset: Dataset, settings: LoraSettings) -> Advice | None:
    """The warning for a small chat dataset whose settings give each record less
    learning (passes x learning rate) than the run that learned; None otherwise."""
    n = dataset.stats.records
    if n >= SMALL or not any(e.messages for e in dataset.examples):
        return None
    train, _ = split_examples(dataset.examples, settings.validation_fraction, settings.seed)
    seen = passes(len(train), settings)
    if seen * settings.learning_rate >= LEARNED_PASSES * LEARNED_LR * 0.999:
        return None
    return Advice(
        message=(f"With {n} records and these settings each record is seen about "
                 f"{seen:.0f} times at learning rate {settings.learning_rate:g}: too few "
                 f"to learn new facts ({MEASURED}). For new facts, use "
                 f"“{preset_label(FACTS_PRESET)}”."),
        preset=FACTS_PRESET)
