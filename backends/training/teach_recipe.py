"""Teach as a recipe: the LoRA recipe with the base model's answers rehearsed and a gate.

Its steps are the fine-tune's (:class:`backends.training.recipe.LoraRecipe`), with three
of its own (:mod:`backends.training.teach_step` does the work):

- rehearse: the base model answers the gate's everyday prompts and neighbour questions
  (the reference the taught answers are judged against) and the rehearsal prompts, which
  join the training data so that those answers stay put; the LoRA weights start from
  the continued version's, and training stops at an epoch's end once every correction
  is answered;
- gate: the taught model judged against the base's answers
  (:mod:`backends.training.teach_gate`); the report is written to the run folder and
  goes into the summary, and a failed gate refuses the result (nothing is exported);
- no recall check: the gate judges its own answers.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from app.atomic import atomic_write_text
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSpec, RunSummary
from app.teach.records import GateReport, TeachSpec
from backends.training import teach_gate, teach_step
from backends.training.recipe import Events, LoraRecipe


class TeachRecipe(LoraRecipe):
    """A Teach run (a run whose spec carries its :class:`TeachSpec`)."""

    inputs: teach_gate.GateInputs  # set by rehearse()
    report: GateReport  # set by gate()

    def __init__(self, folder: RunFolder, spec: RunSpec, emit: Events,
                 cancel: threading.Event) -> None:
        if spec.teach is None:
            raise ValueError(f"run {spec.run_id} is a fine-tune, not a Teach run")
        super().__init__(folder, spec, emit, cancel)
        self.teach: TeachSpec = spec.teach

    def setup(self) -> bool:
        if not super().setup():
            return False
        teach_step.stop_when_learned(self.trainer, self.base, self.inputs, self.device)
        return True

    def rehearse(self) -> None:
        """The base model's reference answers; its rehearsal records join the training
        data."""
        self.inputs = teach_step.prepare(self.teach, self.base, self.train_set, self.device,
                                         self.emit)

    def start_adapter(self, model: Any) -> None:
        """From the continued version's LoRA weights, when it continues one."""
        teach_step.continue_from(model, self.teach, self.emit)

    def checks_seconds(self) -> float:
        """None beyond the gate's, which the phase times already count from the spec."""
        return 0.0

    def gate(self) -> str | None:
        self.report = teach_step.gate(self.inputs, self.trainer.model, self.base,
                                      self.spec.settings, self.device, self.emit)
        atomic_write_text(self.folder.teach_report_file,
                          json.dumps(self.report.to_json(), indent=2))
        return None if self.report.passed else "; ".join(self.report.reasons)

    def summarize(self) -> RunSummary:
        """Save the adapter; the run's summary, with the gate's report."""
        summary = self._training_summary()
        summary.teach = self.report
        return summary
