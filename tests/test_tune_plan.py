"""The Fine-tune tab's preview marks exactly the text the worker trains on, and its
estimate follows the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.chat.template import ChatTemplate, assistant_spans
from app.finetune.datasets import Example, load_dataset
from app.finetune.estimate import CONVERT_S, EXPORT_S_PER_GPARAM, LOAD_S_PER_GPARAM, STARTUP_S
from app.finetune.plan import model_facts, plan_run, render_example
from app.finetune.settings import ExportSettings, LoraSettings
from app.machine.profile import Machine
from app.models.gguf_file import read_gguf
from app.models.library import ModelRecord
from tests.finetune_fixtures import fact_rows, write_jsonl

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of Zorbania?"},
    {"role": "assistant", "content": "Quillport."},
    {"role": "user", "content": "And its river?"},
    {"role": "assistant", "content": "The Silverun.\n"},
]


def _starter_record(starter_gguf: Path) -> ModelRecord:
    info = read_gguf(starter_gguf)
    return ModelRecord("starter", starter_gguf, "starter", "", info.summary())


@pytest.mark.parametrize("which", ["starter", "chatml", "eos_suffix"])
def test_spans_cover_each_reply_and_its_end_marker(which: str, starter_gguf: Path) -> None:
    if which == "starter":
        template, end = model_facts(_starter_record(starter_gguf)).template, "<|im_end|>"
    elif which == "chatml":
        template, end = ChatTemplate.from_metadata(None), "<|im_end|>"
    else:  # a template that rewrites earlier turns: the fallback path with the eos token
        template, end = ChatTemplate.from_metadata(
            "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
            "[A] (earlier reply){% else %}[{{ m['role'] }}] {{ m['content'] }}{% endif %}"
            "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
            "{% if add_generation_prompt %}[assistant] {% endif %}", eos_token="</s>"), "</s>"
    full, spans = assistant_spans(template, CHAT[1:3])
    assert [full[a:b] for a, b in spans] == ["Quillport." + end]
    if which == "eos_suffix":
        # The earlier reply is not rendered at all: there is nothing honest to train on.
        with pytest.raises(ValueError, match="does not reproduce"):
            assistant_spans(template, CHAT)
        return
    full, spans = assistant_spans(template, CHAT)
    assert [full[a:b] for a, b in spans] == ["Quillport." + end, "The Silverun.\n" + end]


def test_preview_highlights_only_the_replies(starter_gguf: Path) -> None:
    template = model_facts(_starter_record(starter_gguf)).template
    record = render_example(Example(line=7, messages=CHAT), template)
    assert record.line == 7
    assert record.trained_text == "Quillport.<|im_end|>The Silverun.\n<|im_end|>"
    assert record.text == template.render(CHAT, add_generation_prompt=False)
    assert [trained for _, trained in record.segments] == [False, True, False, True, False]
    text = render_example(Example(line=1, text="Plain words."), template)
    assert text.segments == [("Plain words.", True)]


def test_plan_counts_steps_like_the_worker(starter_gguf: Path, tmp_path: Path) -> None:
    facts = model_facts(_starter_record(starter_gguf))
    assert facts.vocab == 49152 and facts.layers == 30 and facts.hidden == 576
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))  # 25 records
    machine = Machine(cpu_cores=2, memory_bytes=8 << 30)
    short = plan_run(facts, dataset, LoraSettings(epochs=2, batch_size=4, eval_every=4),
                     machine)
    assert (short.train_records, short.val_records) == (23, 2)
    assert short.total_steps == 12  # ceil(23 / 4) micro-batches per epoch, two epochs
    longer = plan_run(facts, dataset, LoraSettings(epochs=4, batch_size=4, eval_every=4),
                      machine)
    assert longer.total_steps == 24
    # Twice the steps (and validation passes): twice the time, beside the whole run's
    # fixed costs (start, load, export), which the figure shown before Start includes.
    fixed = (STARTUP_S
             + (LOAD_S_PER_GPARAM + EXPORT_S_PER_GPARAM["q8_0"]) * facts.parameters / 1e9)
    assert longer.estimate.seconds - fixed == pytest.approx(
        2 * (short.estimate.seconds - fixed), rel=0.01)
    # The export is priced by its quantization; a live adapter is neither merged nor
    # quantized.
    settings = LoraSettings(epochs=2, batch_size=4, eval_every=4)
    k_quant = plan_run(facts, dataset, settings, machine, export=ExportSettings(quant="q4_k_m"))
    live = plan_run(facts, dataset, settings, machine, export=ExportSettings(live=True))
    assert k_quant.estimate.seconds - short.estimate.seconds == pytest.approx(
        80.0 * facts.parameters / 1e9)
    assert short.estimate.seconds - live.estimate.seconds == pytest.approx(
        120.0 * facts.parameters / 1e9)
    # A base trained on for the first time is converted first (cached afterwards).
    first = plan_run(facts, dataset, settings, machine, converted=False)
    assert first.estimate.seconds - short.estimate.seconds == pytest.approx(CONVERT_S)
    fixed = plan_run(facts, dataset, LoraSettings(max_steps=5), machine)
    assert fixed.total_steps == 5
    assert 600 << 20 < short.estimate.peak_memory_bytes < 8 << 30
