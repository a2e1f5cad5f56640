"""What a fine-tuning run will look like, before it starts: its records and its plan.

The Fine-tune tab shows the first records exactly as they will be trained (rendered with
the base model's own chat template, the spans that carry loss marked) and the run's
plan: its steps, records and tokens, priced by the estimate
(:mod:`app.finetune.estimate`). Both come from the GGUF header and the checked dataset,
without a tokenizer or torch, so they are instant; the worker replaces the figures with
exact token counts and then a measurement once it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.chat.template import ChatTemplate, assistant_spans
from app.chat.tool_prompt import shape
from app.finetune.datasets import CHARS_PER_TOKEN, Dataset, Example, split_examples
from app.finetune.estimate import (
    Compute,
    Estimate,
    ModelShape,
    Overheads,
    Workload,
    compile_mode,
    estimate,
)
from app.finetune.settings import ExportSettings, LoraSettings
from app.machine.profile import Machine
from app.models.architectures import UnsupportedArchitecture, architecture
from app.models.gguf_file import read_gguf
from app.models.library import ModelRecord
from app.models.live import live_only_refusal

ESTIMATE_SAMPLE = 500  # records rendered to measure the average size


@dataclass
class ModelFacts:
    """What the preview and the estimate need from a base model's GGUF header."""

    template: ChatTemplate
    """The chat template the worker will train with (ChatML when the model has none)."""
    vocab: int
    parameters: int
    hidden: int
    layers: int
    refusal: str | None = None
    """Why Hearth cannot fine-tune this model (its architecture is not in the table)."""

    @property
    def shape(self) -> ModelShape:
        return ModelShape(parameters=self.parameters, hidden=self.hidden,
                          layers=self.layers, vocab=self.vocab)


def model_facts(record: ModelRecord) -> ModelFacts:
    """Read once per model (the header holds the whole vocabulary: tens of ms)."""
    text, vocab = None, 0
    if record.path.is_file():
        info = read_gguf(record.path)
        text = info.chat_template
        vocab = int(info.metadata.get("tokenizer.ggml.tokens")
                    or info.arch_value("vocab_size") or 0)
    try:
        architecture(record.info.architecture)
        refusal = live_only_refusal(record)
    except UnsupportedArchitecture as exc:
        refusal = str(exc)
    return ModelFacts(template=ChatTemplate.from_metadata(text), vocab=vocab,
                      parameters=record.info.parameters or 0,
                      hidden=record.info.n_embd or 0,
                      layers=record.info.n_layers or 0, refusal=refusal)


@dataclass
class PreviewRecord:
    """One record as the model will see it: ``segments`` of (text, carries loss)."""

    line: int
    segments: list[tuple[str, bool]]

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.segments)

    @property
    def trained_text(self) -> str:
        return "".join(text for text, trained in self.segments if trained)


def render_example(example: Example, template: ChatTemplate) -> PreviewRecord:
    if example.messages is None:  # plain text: the whole text carries loss
        return PreviewRecord(example.line, [(example.text or "", True)])
    shaped, tools = shape(example.messages, example.tools, template.text, lambda v: v)
    full, spans = assistant_spans(template, shaped, tools)
    segments: list[tuple[str, bool]] = []
    at = 0
    for start, end in spans:
        if start > at:
            segments.append((full[at:start], False))
        segments.append((full[start:end], True))
        at = end
    if at < len(full):
        segments.append((full[at:], False))
    return PreviewRecord(example.line, segments)


def preview(dataset: Dataset, template: ChatTemplate, n: int = 3) -> list[PreviewRecord]:
    return [render_example(e, template) for e in dataset.examples[:n]]


def total_steps(n_records: int, settings: LoraSettings) -> int:
    """How many optimizer steps a run takes: ``max_steps`` when set, else the epochs
    over micro-batches of ``batch_size`` records, ``grad_accumulation`` per step.

    The one formula: the estimate here and the worker's trainer
    (:class:`backends.training.trainer.Plan`) both call it, so the step count shown
    before Start is the one the run makes (given the same number of records)."""
    if settings.max_steps is not None:
        return settings.max_steps
    micro_per_epoch = math.ceil(n_records / settings.batch_size)
    return max(1, math.ceil(settings.epochs * micro_per_epoch / settings.grad_accumulation))


def eval_interval(settings: LoraSettings, steps: int) -> int:
    """Steps between validation passes: ``eval_every``, or about ten per run."""
    return settings.eval_every or max(1, steps // 10)


def validation_passes(settings: LoraSettings, steps: int) -> int:
    """How many validation passes a run of ``steps`` makes (the last step always has one);
    the estimate here and the worker's both price them."""
    every = eval_interval(settings, steps)
    return steps // every + (1 if steps % every else 0)


@dataclass
class RunPlan:
    """The numbers shown next to the preset before Start."""

    train_records: int
    val_records: int
    total_steps: int
    approx_train_tokens: int
    estimate: Estimate


@dataclass(frozen=True)
class DataShape:
    """How big the records are once laid out by the template (measured on a sample)."""

    chars_per_record: float
    target_fraction: float
    """Share of the characters that carry loss (the assistant replies)."""


def measure(dataset: Dataset, template: ChatTemplate) -> DataShape:
    """Render up to ESTIMATE_SAMPLE records; do it once per model and dataset."""
    sample = dataset.examples[:ESTIMATE_SAMPLE]
    chars = target_chars = 0
    for example in sample:
        rendered = render_example(example, template)
        chars += len(rendered.text)
        target_chars += len(rendered.trained_text)
    return DataShape(chars_per_record=chars / max(1, len(sample)),
                     target_fraction=target_chars / max(1, chars))


def plan_run(facts: ModelFacts, dataset: Dataset, settings: LoraSettings,
             machine: Machine, shape: DataShape | None = None,
             export: ExportSettings | None = None, converted: bool = True,
             recall_s: float = 0.0) -> RunPlan:
    """Steps, approximate tokens, time and peak memory of a run, as the worker plans it;
    the time is the whole run's (start, load and, unless ``converted``, conversion;
    train; ``recall_s`` of the recall check, :func:`app.finetune.recall.planned_seconds`;
    export), as the tab shows it."""
    export = export or ExportSettings()
    train, val = split_examples(dataset.examples, settings.validation_fraction, settings.seed)
    shape = shape or measure(dataset, facts.template)
    per_record = min(settings.max_seq_len, shape.chars_per_record / CHARS_PER_TOKEN)
    steps = total_steps(len(train), settings)
    evals = validation_passes(settings, steps)
    work = Workload(
        model=facts.shape,
        steps_tokens=int(steps * settings.batch_size * settings.grad_accumulation * per_record),
        micro_batch_tokens=int(settings.batch_size * per_record),
        target_fraction=shape.target_fraction, eval_tokens=int(evals * len(val) * per_record))
    compute = Compute(machine=machine, gpu=machine.has_gpu, dtype=machine.likely_dtype,
                      compile=compile_mode())
    ends = Overheads(export_quant=export.quant if export.gguf and not export.live else None,
                     converted=converted)
    guess = estimate(work, compute, ends)
    guess.seconds += recall_s
    return RunPlan(train_records=len(train), val_records=len(val), total_steps=steps,
                   approx_train_tokens=int(per_record * len(train)), estimate=guess)
