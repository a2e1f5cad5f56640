"""Teach: the corrections made in chat become a better model, never a worse one.

One press (or ``hearth teach``) trains LoRA on every correction collected for a base
model (plus optional extra data), with settings measured to teach a handful of examples
(:func:`teach_settings`), while rehearsing the base model's own replies to general
prompts so that the rest of what it knows stays put. The training worker then runs
the gate (backends/training/teach_gate.py): *learned*, *generalizes*, *kept*. Only a run that
passes can be accepted; accepted, its exported model becomes the **active version** of
that base: ``hearth chat -m BASE`` and the chat window answer with it, and
:class:`VersionStore` keeps every version with its provenance so any earlier one, or
the plain base, can be made active again (roll back).

A version is the run's GGUF adapter, which chat applies live on the base (switching
versions takes milliseconds and needs no second copy of the weights); one click
(:func:`app.finetune.merge.merge_version`) merges it into a stand-alone GGUF. Every
version is trained from the base on all of its corrections, so versions never stack
and rolling back is just a pointer change.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from app.chat.corrections import CorrectionStore, TrainingExample
from app.errors import ExitCode, HearthError
from app.finetune.datasets import Dataset, load_dataset
from app.finetune.plan import file_key
from app.finetune.runs.folder import RunFolder, create_run
from app.finetune.runs.records import RunSummary, TeachSpec
from app.finetune.runs.results import register_result
from app.finetune.settings import ExportSettings, LoraSettings
from app.models.library import Library, ModelRecord, UnknownModel
from app.paths import HearthHome

DRIFT_LIMIT = 0.30
"""Largest share of the base model's next-token choices on the general prompts that a
version may change (teacher-forced on the base's own greedy replies). Calibrated on the
starter model (BENCHMARKS.md, "Teach"): the default run on ten facts changed 27 %; the
same facts memorised (lr 1e-3 for 8 epochs, 7 rehearsal replies) 34 %; contradictory
corrections at lr 8e-3 58 %. Much of the count is near-tie choices of a small model
flipping (phrasing, not knowledge), hence a limit well above zero."""
MIN_LEARNED = 0.8
"""Share of the corrections the tuned model must answer with the correction."""

# Paraphrases Hearth writes itself, to see that a correction is more than a string match.
PARAPHRASE_TEMPLATES = ("Tell me: {q}", "Quick question. {q}")


def teach_settings(n_records: int) -> LoraSettings:
    """Settings that teach a few corrections on a CPU in about a minute.

    Chosen by measurement on SmolLM2-135M with ten made-up facts (BENCHMARKS.md,
    "Teach"): lr 5e-4 for 5 epochs learned 2 of 10; lr 1e-3 for 5 epochs learned 8 of 10
    with drift 27 %; lr 1e-3 for 8 epochs memorised them (loss 0.002) but drifted 34 %.
    The rehearsal (the base's own replies, mixed in) is what holds drift down.
    """
    return LoraSettings(rank=16, alpha=32, learning_rate=1e-3, epochs=5.0, batch_size=4,
                        max_seq_len=256, warmup_ratio=0.05, seed=0)


def general_prompts() -> dict[str, list[str]]:
    """The shipped prompts: ``check`` (the gate's kept test) and ``rehearse``."""
    text = resources.files("resources").joinpath("general_prompts.json").read_text("utf-8")
    data = json.loads(text)
    return {"check": list(data["check"]), "rehearse": list(data["rehearse"])}


def paraphrases(prompt: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """The prompt with its last question reworded by :data:`PARAPHRASE_TEMPLATES`."""
    if not prompt or prompt[-1]["role"] != "user":
        return []
    q = prompt[-1]["content"].strip()
    return [[*prompt[:-1], {"role": "user", "content": t.format(q=q)}]
            for t in PARAPHRASE_TEMPLATES]


# --------------------------------------------------------------------- versions


@dataclass
class Version:
    """One accepted (or kept, not yet accepted) teach result: a library model."""

    name: str
    base: str
    run_id: str
    created_at: str
    corrections: list[int]
    extra: str | None
    settings: dict[str, Any]
    report: dict[str, Any]
    accepted: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Base:
    active: str | None = None
    versions: list[Version] = field(default_factory=list)


class VersionStore:
    """Which version of each base model the chat uses; a JSON file in the home.

    Kept apart from the SQLite schema on purpose: it is small, read at chat start, and
    written atomically (write, then rename), so a crash leaves the old or the new state.
    """

    def __init__(self, home: HearthHome) -> None:
        self.path = home.root / "teach" / "versions.json"

    def _load(self) -> dict[str, _Base]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        out = {}
        for base, entry in raw.get("bases", {}).items():
            out[base] = _Base(entry.get("active"),
                              [Version(**v) for v in entry.get("versions", [])])
        return out

    def _save(self, data: dict[str, _Base]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"bases": {b: {"active": e.active,
                                 "versions": [v.to_json() for v in e.versions]}
                             for b, e in data.items()}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2), "utf-8")
        os.replace(tmp, self.path)

    def versions(self, base: str) -> list[Version]:
        entry = self._load().get(base)
        return list(entry.versions) if entry else []

    def active(self, base: str) -> str | None:
        entry = self._load().get(base)
        return entry.active if entry else None

    def base_of(self, name: str) -> str | None:
        """The base a version was taught from (None when ``name`` is not a version)."""
        for base, entry in self._load().items():
            if any(v.name == name for v in entry.versions):
                return base
        return None

    def add(self, version: Version, activate: bool) -> None:
        data = self._load()
        entry = data.setdefault(version.base, _Base())
        entry.versions = [v for v in entry.versions if v.name != version.name] + [version]
        if activate:
            version.accepted = True
            entry.active = version.name
        self._save(data)

    def activate(self, base: str, name: str | None) -> None:
        """Make version ``name`` the one the chat uses, or the plain base (None)."""
        data = self._load()
        entry = data.setdefault(base, _Base())
        if name is not None:
            match = [v for v in entry.versions if v.name == name]
            if not match:
                known = ", ".join(v.name for v in entry.versions) or "none"
                raise ValueError(f"{name!r} is not a version of {base} (versions: {known})")
            match[0].accepted = True
        entry.active = name
        self._save(data)

    def forget(self, base: str, name: str) -> None:
        data = self._load()
        entry = data.get(base)
        if entry is None:
            return
        entry.versions = [v for v in entry.versions if v.name != name]
        if entry.active == name:
            entry.active = None
        self._save(data)


def chat_model(library: Library, versions: VersionStore, record: ModelRecord,
               use_base: bool = False) -> ModelRecord:
    """The model that answers when the person picks ``record``: its active version.

    A version removed from the library falls back to the base, never to an error.
    """
    if use_base:
        return record
    active = versions.active(record.name)
    if active is None:
        return record
    try:
        return library.get(active)
    except UnknownModel:
        return record


# ------------------------------------------------------------------- a teach run


@dataclass
class TeachPlan:
    run_id: str
    base: str
    corrections: list[int]
    cases: int
    extra: str | None


class TeachError(HearthError, ValueError):
    """Teach cannot start; the message says why and what to do."""

    exit_code = ExitCode.BAD_INPUT


def corrections_for(corrections: CorrectionStore, versions: VersionStore, base: str
                    ) -> list[TrainingExample]:
    """Every correction made while chatting with ``base`` or any version of it."""
    return [ex for ex in corrections.list()
            if ex.model == base or (ex.model and versions.base_of(ex.model) == base)]


def _case(prompt: list[dict[str, str]], chosen: str, rejected: str, source: str,
          ident: int | None) -> dict[str, Any]:
    return {"id": ident, "source": source, "prompt": prompt, "chosen": chosen,
            "rejected": rejected, "paraphrases": paraphrases(prompt)}


def start_teach(home: HearthHome, library: Library, corrections: CorrectionStore,
                base: ModelRecord, extra: Dataset | None = None,
                settings: LoraSettings | None = None,
                export: ExportSettings | None = None) -> TeachPlan:
    """Write the teach run's data and gate inputs; the caller starts its worker."""
    versions = VersionStore(home)
    if versions.base_of(base.name) is not None:
        base = library.get(versions.base_of(base.name) or base.name)
    examples = corrections_for(corrections, versions, base.name)
    cases = [_case(ex.prompt, ex.corrected, ex.rejected, "correction", ex.id)
             for ex in examples]
    rows = [{"messages": ex.messages} for ex in examples]
    if extra is not None:
        for ex in extra.examples:
            rows.append(ex.to_json())
            if ex.messages and ex.messages[-1]["role"] == "assistant":
                cases.append(_case(ex.messages[:-1], ex.messages[-1]["content"], "",
                                   "extra", ex.line))
    if not rows:
        raise TeachError(f"there are no corrections for {base.name} yet: use “Correct "
                         "this” on a reply in a chat with it (or pass --extra DATA)")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    data_path = home.datasets / f"teach-{stamp}.jsonl"
    tmp = data_path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    os.replace(tmp, data_path)
    dataset = load_dataset(data_path)
    prompts = general_prompts()
    n = len(versions.versions(base.name)) + 1
    name = f"{base.name}-taught-{n}"
    while any(r.name == name for r in library.list()):
        n += 1
        name = f"{base.name}-taught-{n}"
    settings = settings or teach_settings(dataset.stats.records)
    # A version is an adapter applied live: no merge, no second quantization (merge it
    # later with merge_version when it should stand alone).
    export = export or ExportSettings(out_name=name, fidelity_samples=2, live=True)
    teach = TeachSpec(
        base=base.name, corrections=[ex.id for ex in examples],
        extra=str(extra.path) if extra is not None else None,
        cases=cases, check_prompts=prompts["check"],
        rehearse_prompts=prompts["rehearse"], drift_limit=DRIFT_LIMIT,
        min_learned=MIN_LEARNED,
        reference_cache=str(home.root / "cache" / "teach" /
                            f"{file_key(base.path)}.json") if base.path.exists()
        else None)
    run_id = create_run(home, base, dataset, settings, export, holdout=False, teach=teach)
    return TeachPlan(run_id=run_id, base=base.name, corrections=[ex.id for ex in examples],
                     cases=len(cases), extra=teach.extra)


def keep_result(home: HearthHome, library: Library, summary: RunSummary,
                accept: bool) -> Version | None:
    """Register a finished teach run's model as a version; active when ``accept``.

    A run whose gate failed is never made active (nor registered: it was not exported).
    """
    report = summary.teach or {}
    if not summary.model_file or not report:
        return None
    spec = RunFolder.of(home, summary.run_id).spec()
    record = register_result(library, home, summary)
    teach = spec.teach or TeachSpec()
    version = Version(name=record.name, base=teach.base, run_id=summary.run_id,
                      created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                      corrections=teach.corrections, extra=teach.extra,
                      settings=spec.settings.to_json(),
                      report={k: v for k, v in report.items() if k != "cases"})
    VersionStore(home).add(version, activate=accept and bool(report.get("passed")))
    return version


def discard_result(home: HearthHome, library: Library, summary: RunSummary) -> None:
    """Throw a teach result away: its GGUF, its library entry and version, its adapter."""
    import shutil

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


def describe(report: dict[str, Any]) -> str:
    """The report in a sentence a person reads in a few seconds."""
    head = f"Learned {report['learned']} of {report['total']}"
    if report.get("paraphrases"):
        head += (f" (reworded questions: {report['generalized']} of "
                 f"{report['paraphrases']})")
    within = "within" if report["drift"] <= report["drift_limit"] else "over"
    head += (f"; general behaviour changed {report['drift']:.1%}, {within} the "
             f"{report['drift_limit']:.0%} limit.")
    if report.get("passed"):
        return head + " Passed: it can be used in chat."
    return head + " Not accepted: " + "; ".join(report.get("reasons") or []) + "."
