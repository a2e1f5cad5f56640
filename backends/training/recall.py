"""The recall check inside the training worker: the tuned model asked its own data.

After training and before the export, :class:`RecallCheck` asks the tuned model up to 24
of the dataset's questions (held-out validation records first; see
:func:`app.finetune.recall.choose_questions`) greedily, 64 tokens at most, and judges
each answer against the trained reply; then the 120 held-out everyday prompts of Teach's
gate, judged against the base model's answers exactly as the gate judges them
(:func:`app.teach.judge.departs` and :func:`~app.teach.judge.counts`, with each base
answer's stability). The base's answers are Teach's own cache
(:func:`backends.training.teach_gate.reference_replies`, one file per base model), made
the first time with the adapter switched off, so a fine-tune and a Teach on the same
base share them.

Its cost does not grow with the dataset: one batch of at most 24 answers of 64 tokens,
and 120 everyday answers of 40 (five times that the first time on a base: the base's
answers and their three perturbations, cached afterwards). The everyday part is timed
on its first batch and skipped, saying so, when the rest would take longer than
:data:`app.finetune.recall.GENERAL_BUDGET_S` (a 1B model on a small CPU, or the first run
on a base on a busy one): the check takes at most its questions, one batch of 64
everyday answers and that budget.
Measured on the 2-core VM with SmolLM2-135M and twelve records (BENCHMARKS.md, "Fine-tune
recall (issue 23 item 8)"): 156 s with the base's answers cached, while other work
shared the machine (the 18 training steps took 16 s), 260 s under heavier load; the
generation alone, 12 questions 41 s and the 120 everyday prompts 163 s. That is far more
than a twelve-record run trains, and it is what telling the truth about it costs: the
estimate before Start includes it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from app.finetune import protocol as tp
from app.finetune import recall
from app.finetune.phase_times import PhaseTimes
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSpec
from app.paths import HearthHome
from app.teach import judge, probes
from app.teach.reference import cache_in_use, is_cached, reference_cache
from backends.training import teach_gate
from backends.training.loading import read_examples

SHOWN_CHANGES = 5


def reference_file(spec: RunSpec) -> Path | None:
    """Teach's cache file of this base's everyday answers, as configured (the worker's
    ``HEARTH_CACHE`` override applies where it is read: :func:`cache_in_use`). The run's
    home is the one whose base-model cache it names (``<home>/cache/base-models``)."""
    return reference_cache(HearthHome(Path(spec.cache_dir).parents[1]), Path(spec.base.path))


def recall_seconds(spec: RunSpec, timings: PhaseTimes, n_params: int,
                   device: torch.device) -> float:
    """The check's part of the run's estimate: at this machine's last measured speed, or
    the first guess (:func:`app.finetune.recall.check_seconds`)."""
    prompts = [g.prompt for g in probes.general_prompts()["check"]]
    return recall.check_seconds(n_params, torch.get_num_threads(), device.type == "cuda",
                                is_cached(reference_file(spec), prompts),
                                rate=timings.recall_rate)


class RecallCheck:
    """One run's recall check, after training: ask, judge, report."""

    def __init__(self, folder: RunFolder, spec: RunSpec, base: Any, device: torch.device,
                 emit: Any) -> None:
        self.spec, self.base, self.device, self.emit = spec, base, device, emit
        self.cache = reference_file(spec)
        self.questions = recall.choose_questions(read_examples(folder.val_file),
                                                 read_examples(folder.train_file))
        self.general = list(probes.general_prompts()["check"])
        self.budget_s = recall.GENERAL_BUDGET_S

    def run(self, model: Any) -> recall.RecallReport:
        """Ask ``model`` (the tuned PEFT model) and judge; the report for the summary."""
        if not self.questions:
            self.emit(tp.Log("info", f"Recall check skipped: {recall.NO_CHAT}"))
            return recall.RecallReport(skipped=recall.NO_CHAT)
        self.emit(tp.Phase("recall", f"asking the tuned model {len(self.questions)} of "
                           f"its own questions and {len(self.general)} everyday prompts"))
        started = time.perf_counter()
        b = self.base
        answers = teach_gate.greedy(model, b.tokenizer, b.template,
                                    [q.prompt for q in self.questions], self.device,
                                    max_new_tokens=teach_gate.TAUGHT_TOKENS)
        examples = recall.judge_answers(self.questions, [a.text for a in answers])
        general = self._general(model)
        model.train()
        report = recall.report_of(examples, general, time.perf_counter() - started)
        self.emit(tp.Log("info", report.line()))
        if report.warning():
            self.emit(tp.Log("warning", report.warning() or ""))
        return report

    def _general(self, model: Any) -> dict[str, Any]:
        """The everyday prompts judged as Teach's gate judges them, when the rest of the
        work fits the budget (timed on the first batch of the tuned model's answers: the
        rest are batches of the same shapes); the trained replies' distinctive words are
        the leaks looked for."""
        b = self.base
        prompts = [g.prompt for g in self.general]
        asked = [[{"role": "user", "content": p}] for p in prompts]
        first = teach_gate.GEN_BATCH
        started = time.perf_counter()
        tuned = teach_gate.greedy(model, b.tokenizer, b.template, asked[:first], self.device)
        spent = time.perf_counter() - started
        passes = 0 if is_cached(self.cache, prompts) else recall.REFERENCE_PASSES
        rest = spent / max(1, len(tuned)) * (len(asked) * (1 + passes) - len(tuned))
        if rest > self.budget_s:  # what is spent is spent: only the rest is weighed
            return {"skipped": f"it would take about {(spent + rest) / 60:.0f} min here"}
        tuned += teach_gate.greedy(model, b.tokenizer, b.template, asked[first:], self.device)
        if passes:  # its own phase: the worker learns the check's speed without it
            self.emit(tp.Phase("references", f"the base model answers the {len(prompts)} "
                               "everyday prompts (once per base model; Teach uses them "
                               "too)"))
        with model.disable_adapter():  # the base itself: LoRA's weights are left out
            references = teach_gate.reference_replies(
                model, b.tokenizer, b.template, prompts, self.device,
                cache_in_use(self.cache), "check",
                kinds=[g.kind for g in self.general])
        if passes:
            self.emit(tp.Phase("recall", "judging the everyday answers"))
        keys = [q.key() for q in self.questions]
        changed = []
        for g, ref, a in zip(self.general, references, tuned, strict=True):
            why = judge.counts(judge.departs(ref.text, a.text, g.kind, g.prompt, keys),
                               ref.stable)
            if why:  # here the "corrections" are the data's replies
                changed.append({"prompt": g.prompt, "base": ref.text[:200],
                                "answer": a.text[:200],
                                "why": why.replace("from a correction", "from the data")})
        return {"changed": len(changed), "total": len(self.general),
                "unstable": sum(not r.stable for r in references),
                "examples": changed[:SHOWN_CHANGES]}
