"""A teach run: the corrections become training data, gate inputs, and a version.

One press (or ``hearth teach``) trains LoRA on every correction collected for a base
model (plus optional extra data). Each correction is trained in several forms of its
question that Hearth writes itself (:func:`app.teach.probes.variations`), with the loss
on the corrected reply and its end of turn only, beside the base model's own answers to
general prompts and to neighbour questions (rehearsed, so that they stay put). The
training worker then runs the gate (``backends/training/teach_gate.py``) on free-running
answers: *learned*, *reworded*, *neighbours kept*, *general answers changed*, *stops*.
Only a run that passes can be accepted; accepted, its adapter becomes the **active
version** of that base (:mod:`app.teach.versions`).

Some sets are refused before any training (:func:`preflight`): the same question
corrected two ways, one correction repeated many times, a correction that insults the
person. The message names the corrections and what to do.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.chat.corrections import CorrectionStore, TrainingExample, save_rows
from app.chat.tool_prompt import openai_message, shown_reply
from app.errors import ExitCode, HearthError
from app.finetune.datasets import Dataset, load_dataset
from app.finetune.runs.folder import RunFolder, create_run
from app.finetune.runs.records import RunSummary
from app.finetune.runs.results import register_result
from app.finetune.settings import MLP_MODULES, ExportSettings, LoraSettings
from app.models.library import Library, ModelRecord, UnknownModel
from app.paths import HearthHome
from app.teach import judge, probes
from app.teach.continuing import Continuation, continuation
from app.teach.limits import GateLimits
from app.teach.records import CaseSource, GateReport, Messages, TeachCase, TeachSpec
from app.teach.reference import reference_cache
from app.teach.versions import Version, VersionStore

REHEARSED_NEIGHBOURS = 6
"""Neighbour questions per correction whose base answers are rehearsed in training. Taught
alone, "the national dish of Tarnessa is skellan pie" became the national dish of Japan
too; the base's own answers about other subjects teach that the subject matters."""
MAX_REPEATS = 3
"""How often one correction may appear before the set is refused: the same fact written
40 times teaches the model to say it everywhere (measured in ``hearth bench teach``)."""


def teach_settings() -> LoraSettings:
    """Settings that teach a few corrections on a CPU in a minute or two.

    Chosen on ``hearth bench teach`` (BENCHMARKS.md, "Teach, judged on answers"): every
    correction is trained in five forms of its question, so epochs count exposures of
    each form; training stops early once every correction is answered (the worker checks
    after each epoch). LoRA on the MLPs only: on ten facts it kept 14 of 20 neighbour
    questions where LoRA on every projection kept 10, and changed 19 everyday answers
    where it changed 49 (both learned 10 of 10).
    """
    return LoraSettings(rank=16, alpha=32, learning_rate=1e-3, epochs=6.0, batch_size=4,
                        max_seq_len=256, warmup_ratio=0.05, seed=0,
                        target_modules=list(MLP_MODULES))


@dataclass
class TeachPlan:
    run_id: str
    base: str
    corrections: list[int]
    cases: int
    """The corrections (and extra records) trained in all their forms: new to this run."""
    extra: str | None
    continues: str | None = None
    """The version this run continues (None: trained from the base)."""


class TeachError(HearthError, ValueError):
    """Teach cannot start; the message says why and what to do."""

    exit_code = ExitCode.BAD_INPUT


class TeachRefused(TeachError):
    """The corrections themselves would make a worse model: refused before training."""

    exit_code = ExitCode.REJECTED


def corrections_for(corrections: CorrectionStore, versions: VersionStore, base: str
                    ) -> list[TrainingExample]:
    """Every correction made while chatting with ``base`` or any version of it."""
    return [ex for ex in corrections.list()
            if ex.model == base or (ex.model and versions.base_of(ex.model) == base)]


def _question(prompt: Messages) -> str:
    return prompt[-1]["content"].strip() if prompt and prompt[-1]["role"] == "user" else ""


def _with_question(prompt: Messages, question: str) -> Messages:
    return [*prompt[:-1], {"role": "user", "content": question}]


def make_case(prompt: Messages, chosen: str, rejected: str, source: CaseSource,
              ident: int | None, tools: str = "", calls: str = "",
              rejected_calls: str = "") -> TeachCase:
    """A correction with the questions Hearth derives from it (see app.teach.probes).

    A correction of a tool call gets no neighbours: swapping the subject ("Tokyo" for
    "Lisbon") asks for another argument, so the base's call there is no reference the
    taught call must keep, and the gate's general answers already watch for leaks."""
    q = _question(prompt)
    case = TeachCase(ident, source, prompt, chosen, rejected, tools=tools, calls=calls,
                     rejected_calls=rejected_calls)
    if not q:
        return case
    case.variations = [_with_question(prompt, v) for v in probes.variations(q)]
    case.rewordings = [_with_question(prompt, v) for v in probes.rewordings(q)]
    if not calls:
        case.neighbours = probes.neighbours(q, 2)
        case.rehearse_neighbours = probes.neighbours(q, REHEARSED_NEIGHBOURS, skip=2)
    return case


def training_rows(cases: list[TeachCase]) -> list[dict[str, Any]]:
    """The correction and each variation of its question, all answered as corrected
    (an earlier correction, replayed, in its own words only): rows of the run's dataset,
    in OpenAI's format (with the case's ``tools``, its calls as lists)."""
    rows: list[dict[str, Any]] = []
    for case in cases:
        if not case.new and not case.replay:
            continue
        tools = {"tools": json.loads(case.tools)} if case.tools else {}
        for prompt in [case.prompt, *case.variations]:
            rows.append({"messages": [openai_message(m) for m in [*prompt, case.reply()]],
                         **tools})
    return rows


def _case_of(ex: TrainingExample) -> TeachCase:
    return make_case(ex.prompt, ex.corrected, ex.rejected, CaseSource.CORRECTION, ex.id,
                     ex.tools, ex.calls, ex.rejected_calls)


def _who(case: TeachCase) -> str:
    kind = "correction" if case.source == CaseSource.CORRECTION else "record"
    return f"{kind} {case.id} (“{_question(case.prompt)[:60]}”)"


def preflight(cases: list[TeachCase]) -> None:
    """Refuse sets that cannot make a better model, naming the corrections at fault."""
    problems = []
    by_question: dict[str, list[TeachCase]] = {}
    for case in cases:
        by_question.setdefault(" ".join(judge.words(_question(case.prompt))), []).append(case)
        if judge.insults(case.chosen):
            problems.append(f"{_who(case)} insults the person: reword it")
    for same in by_question.values():
        answers = {" ".join(judge.words(shown_reply(c.chosen, c.calls))) for c in same}
        if len(answers) > 1:
            problems.append(f"{', '.join(_who(c) for c in same[:3])} answer the same "
                            "question in different ways: keep the right one, remove the rest")
        elif len(same) > MAX_REPEATS:
            problems.append(f"{_who(same[0])} is there {len(same)} times: remove the copies "
                            f"(Hearth rewords each correction itself; at most {MAX_REPEATS})")
    if problems:
        raise TeachRefused("Teach refused these corrections before training: "
                           + "; ".join(problems))


def earlier_case(ex: TrainingExample, replay: bool, check: bool) -> TeachCase:
    """A correction the continued version already knows: replayed in its own words only
    and, when sampled, asked again by the gate (see app.teach.continuing)."""
    return TeachCase(ex.id, CaseSource.EARLIER, ex.prompt, ex.corrected, ex.rejected,
                     replay=replay, check=check, tools=ex.tools, calls=ex.calls,
                     rejected_calls=ex.rejected_calls)


def _cases(home: HearthHome, versions: VersionStore, base: ModelRecord,
           corrections: CorrectionStore, extra: Dataset | None, settings: LoraSettings
           ) -> tuple[list[TeachCase], list[dict[str, Any]], Continuation | None, list[int]]:
    """The cases to teach and check, the extra data's other records, where to start, and
    every correction the version will know."""
    examples = corrections_for(corrections, versions, base.name)
    cont = continuation(home, versions, base.name, examples, settings)
    fresh = cont.new if cont is not None else examples
    cases = [_case_of(ex) for ex in fresh]
    passthrough = []
    if extra is not None:
        for ex in extra.examples:
            if ex.messages and ex.messages[-1]["role"] == "assistant":
                cases.append(make_case(ex.messages[:-1], ex.messages[-1]["content"], "",
                                       CaseSource.EXTRA, ex.line, ex.tools,
                                       ex.messages[-1].get("tool_calls", "")))
            else:
                passthrough.append(ex.to_json())
    if not cases and not passthrough:
        if cont is not None:
            raise TeachError(f"{cont.version} already knows every correction made with "
                             f"{base.name}: correct more replies first")
        raise TeachError(f"there are no corrections for {base.name} yet: use “Correct "
                         "this” on a reply in a chat with it (or pass --extra DATA)")
    earlier = []
    if cont is not None:
        new_ids = {ex.id for ex in fresh}
        replayed = {ex.id for ex in cont.replayed}
        checked = {ex.id for ex in cont.checked}
        earlier = [earlier_case(ex, ex.id in replayed, ex.id in checked)
                   for ex in examples if ex.id not in new_ids]
    preflight(cases + earlier)
    return (cases + [c for c in earlier if c.replay or c.check], passthrough, cont,
            [ex.id for ex in examples])


def plan_teach(home: HearthHome, base: ModelRecord, corrections: CorrectionStore,
               extra: Dataset | None = None, settings: LoraSettings | None = None,
               limits: GateLimits | None = None) -> tuple[TeachSpec, list[dict[str, Any]]]:
    """What a Teach of ``base`` would train and check now, without writing anything: its
    section of run.json and its training rows. :func:`start_teach` writes them; the
    estimate before Teach (:mod:`app.teach.estimate`) prices them."""
    versions = VersionStore(home)
    cases, passthrough, cont, known = _cases(home, versions, base, corrections, extra,
                                             settings or teach_settings())
    general = probes.general_prompts()
    teach = TeachSpec(
        base=base.name, corrections=known,
        extra=str(extra.path) if extra is not None else None,
        cases=cases, check_prompts=list(general["check"]),
        rehearse_prompts=[p.prompt for p in general["rehearse"]],
        limits=limits or GateLimits(),
        reference_cache=str(cache) if (cache := reference_cache(home, base.path)) else None,
        start_from=cont.adapter_dir if cont is not None else None,
        start_version=cont.version if cont is not None else None)
    return teach, training_rows(cases) + passthrough


def start_teach(home: HearthHome, library: Library, corrections: CorrectionStore,
                base: ModelRecord, extra: Dataset | None = None,
                settings: LoraSettings | None = None,
                export: ExportSettings | None = None,
                limits: GateLimits | None = None) -> TeachPlan:
    """Write the teach run's data and gate inputs; the caller starts its worker."""
    versions = VersionStore(home)
    if versions.base_of(base.name) is not None:
        base = library.get(versions.base_name(base.name))
    settings = settings or teach_settings()
    teach, rows = plan_teach(home, base, corrections, extra, settings, limits)
    dataset = load_dataset(save_rows(home.datasets, "teach", rows))
    n = len(versions.versions(base.name)) + 1
    name = f"{base.name}-taught-{n}"
    while any(r.name == name for r in library.list()):
        n += 1
        name = f"{base.name}-taught-{n}"
    # A version is an adapter applied live: no merge, no second quantization (merge it
    # later with merge_version when it should stand alone).
    export = export or ExportSettings(out_name=name, fidelity_samples=2, live=True)
    run_id = create_run(home, base, dataset, settings, export, holdout=False, teach=teach)
    return TeachPlan(run_id=run_id, base=base.name, corrections=teach.corrections,
                     cases=len(teach.new_cases),
                     extra=teach.extra,
                     continues=teach.start_version)


def gate_passed(summary: RunSummary | None) -> bool:
    """Whether ``summary`` is of a teach run the gate passed: only such a result may
    become a version."""
    return summary is not None and summary.teach is not None and summary.teach.passed


def keep_result(home: HearthHome, library: Library, summary: RunSummary,
                accept: bool) -> Version | None:
    """Register a finished teach run's model as a version; active when ``accept``.

    A run whose gate failed is never made active (nor registered: it was not exported).
    """
    report = summary.teach
    if not summary.model_file or report is None:
        return None
    spec = RunFolder.of(home, summary.run_id).spec()
    record = register_result(library, home, summary)
    teach = spec.teach or TeachSpec()
    version = Version(name=record.name, base=teach.base, run_id=summary.run_id,
                      created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                      corrections=teach.corrections, extra=teach.extra,
                      settings=spec.settings, continued_from=teach.start_version,
                      report=report.without_answers())
    VersionStore(home).add(version, activate=accept and report.passed)
    return version


def discard_result(home: HearthHome, library: Library, summary: RunSummary) -> None:
    """Throw a teach result away: its GGUF, its library entry and version, its adapter."""
    versions = VersionStore(home)
    spec = RunFolder.of(home, summary.run_id).spec()
    name = spec.out_name
    if spec.teach is not None and spec.teach.base:
        versions.forget(spec.teach.base, name)
    with contextlib.suppress(UnknownModel):
        library.remove(name)
    if summary.gguf_path:
        Path(summary.gguf_path).unlink(missing_ok=True)
    if summary.adapter_dir:
        shutil.rmtree(summary.adapter_dir, ignore_errors=True)


def describe(report: GateReport) -> str:
    """The report in a sentence a person reads in a few seconds."""
    head = f"Learned {report.learned} of {report.total}"
    if report.earlier_total:
        head += (f"; earlier corrections still answered {report.earlier_kept} of "
                 f"{report.earlier_total}")
    if report.paraphrases:
        head += f"; reworded questions {report.reworded} of {report.paraphrases}"
    if report.neighbours_total:
        head += (f"; neighbouring questions kept {report.neighbours_kept} of "
                 f"{report.neighbours_total}")
    if report.general_total:
        head += (f"; everyday answers changed {report.general_changed} of "
                 f"{report.general_total}")
    head += "."
    if report.passed:
        return head + " Passed: it can be used in chat."
    return head + " Not accepted: " + "; ".join(report.reasons) + "."


def report_lines(report: GateReport, width: int = 90) -> list[str]:
    """The report's details: each correction with the taught answer, then each answer
    that changed, base beside taught, so the person sees what a refusal was about."""
    lines = []
    for case in report.cases:
        earlier = case.source == CaseSource.EARLIER
        if earlier and case.learned and case.stops:
            continue  # still known: only what an earlier correction lost is news
        mark = "✓" if case.learned else "✗"
        tag = "(earlier, forgotten) " if earlier and not case.learned else ""
        lines.append(f"{mark} {tag}{case.question[:width]}\n"
                     f"    → {case.answer[:width]}")
        if not case.stops:
            lines.append("    (this answer does not end: it repeats or runs on)")
    if report.harmed:
        lines.append(f"\nAnswers that changed ({len(report.harmed)}):")
    for harm in report.harmed[:20]:
        lines.append(f"• {harm.prompt[:width]} — {harm.why}\n"
                     f"    base:   {harm.base[:width]}\n"
                     f"    taught: {harm.answer[:width]}")
    return lines
