"""Teach's steps inside the training worker: before training, and the gate after it.

Before: the base model answers the held-out everyday prompts and the neighbour questions
the gate will ask (the reference its taught answers are judged against), and the
rehearsal prompts and other neighbour questions (mixed into training, so those answers
stay put). During: after each epoch from the second on, training stops as soon as every
correction is answered. After: the gate (:mod:`backends.training.teach_gate`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from app.finetune import protocol as tp
from app.teach.records import GateReport, GeneralAnswer, ReferenceCost, TeachCase, TeachSpec
from app.teach.reference import cache_in_use, is_cached
from backends.training import teach_gate


def prepare(teach: TeachSpec, base: Any, train: Any, device: torch.device,
            emit: Any) -> teach_gate.GateInputs:
    """The base model's reference answers; its rehearsal records join ``train``."""
    general = [g.prompt for g in teach.check_prompts]
    asked = [q for c in teach.cases for q in c.neighbours]
    rehearsed = [q for c in teach.cases for q in c.rehearse_neighbours]
    emit(tp.Phase("rehearsing", f"the base model answers {len(general)} everyday prompts, "
                  f"{len(teach.rehearse_prompts)} to rehearse and {len(asked) + len(rehearsed)} "
                  "neighbouring questions (what must not change)"))
    base.model.to(device)
    cache = cache_in_use(teach.reference_cache)
    cached = is_cached(teach.reference_cache, general, teach.rehearse_prompts)
    began = time.perf_counter()
    args = (base.model, base.tokenizer, base.template)
    check = teach_gate.reference_replies(*args, general, device, cache, "check",
                                         kinds=[g.kind for g in teach.check_prompts])
    rehearse = teach_gate.reference_replies(*args, teach.rehearse_prompts, device, cache,
                                            "rehearse")
    reference = ReferenceCost(round(time.perf_counter() - began, 1), cached)
    user = [[{"role": "user", "content": q}] for q in asked]
    near = teach_gate.greedy(*args, user, device) if user else []
    teach_gate.mark_stable(*args, near, asked, ["fact"] * len(asked), device)
    extra = teach_gate.greedy(*args, [[{"role": "user", "content": q}] for q in rehearsed],
                              device) if rehearsed else []
    records = teach_gate.rehearsal_records(rehearse + extra)
    train.records.extend(records)
    emit(tp.Log("info", f"Rehearsing {len(records)} of the base model's own answers "
                     f"alongside {len(teach.cases)} corrections"))
    return teach_gate.GateInputs(
        cases=teach.checked_cases,
        general=[GeneralAnswer(g.prompt, g.kind, r.text, r.stable)
                 for g, r in zip(teach.check_prompts, check, strict=True)],
        neighbour_base=dict(zip(asked, near, strict=True)),
        limits=teach.limits, check_replies=check, reference=reference)


def continue_from(peft_model: Any, teach: TeachSpec | None, emit: Any) -> None:
    """Start from the continued version's LoRA weights (app.teach.continuing) instead of
    zero: what it learned stays, and only the new corrections need the steps."""
    if teach is None or not teach.start_from:
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(teach.start_from) / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(peft_model, weights)
    unused = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unused:
        raise ValueError(f"the adapter of {teach.start_version} does not fit this run: "
                         f"{unused[:3]}")
    new = len(teach.new_cases)
    replayed = sum(c.replay for c in teach.cases)
    emit(tp.Log("info", f"Continuing {teach.start_version}: training {new} new "
                     f"corrections, replaying {replayed} it already knows"))


EARLIER_KEPT_AIM = 0.95
"""The share of the earlier corrections asked again that training keeps going for, one
epoch past the gate's floor (:attr:`app.teach.limits.GateLimits.min_earlier_kept`)."""


def stop_when_learned(trainer: Any, base: Any, inputs: teach_gate.GateInputs,
                      device: torch.device) -> None:
    """Stop training at an epoch's end once every correction is answered: each epoch
    more moves the neighbours further (measured in ``hearth bench teach``).

    In a continuing round the earlier corrections the gate will ask again must also be
    kept by then, as the gate requires: the new ones alone were learned within two epochs
    while the replay had not yet brought the earlier ones back (a fifth round of ten
    stopped at 47 steps with 33 of 40 earlier ones answered, and the gate refused it).
    They are asked only once the new ones are all answered, so the check costs a round
    more only when it would have stopped.

    Training aims at :data:`EARLIER_KEPT_AIM` of them for one epoch past the gate's floor,
    then settles for the floor. Stopped at the floor, a seventh round kept 36 of the 40
    asked and 53 of all 60 earlier facts (88 %); aiming, the eighth kept 39 of 40 (69 of
    70) at 150 steps, and the ninth never reached it, trained all 300 steps (1.7x the
    eighth's time) and still kept 36 of 40.
    """
    new = [c for c in inputs.cases if c.prompt and c.new]
    earlier = [c for c in inputs.cases if c.prompt and not c.new]
    floor = inputs.limits.min_earlier_kept * len(earlier)
    aim = max(floor, EARLIER_KEPT_AIM * len(earlier))
    at_floor = False  # the floor was reached at an earlier check

    def answered(cases: list[TeachCase]) -> int:
        return teach_gate.learned_count(trainer.model, base.tokenizer, base.template,
                                        cases, device)

    def check() -> str | None:
        nonlocal at_floor
        learned = answered(new)
        if learned < len(new):
            return None
        if not earlier:
            return f"all {learned} corrections answered"
        kept = answered(earlier)
        if kept < floor or (kept < aim and not at_floor):
            at_floor = at_floor or kept >= floor
            return None
        return (f"all {learned} corrections answered, and {kept} of {len(earlier)} "
                "earlier ones")

    if new:
        trainer.stop_check = check


def gate(inputs: teach_gate.GateInputs, peft_model: Any, base: Any, settings: Any,
         device: torch.device, emit: Any) -> GateReport:
    emit(tp.Phase("checking", f"checking what it learned ({len(inputs.cases)} corrections, "
                  f"reworded), neighbouring questions and {len(inputs.general)} everyday "
                  "answers against the base's"))
    started = time.perf_counter()
    report = teach_gate.run_gate(peft_model, base.tokenizer, base.template,
                                 settings.max_seq_len, inputs, device)
    report.gate_seconds = round(time.perf_counter() - started, 1)
    report.reference = inputs.reference
    peft_model.train()
    return report
