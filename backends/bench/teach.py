"""``hearth bench teach``: the editing benchmark, scored on generated answers.

``python -m backends.bench.teach --model GGUF [--facts N] [--round K]
[--sequential] [--json]`` (``--sequential``: :mod:`backends.bench.teach_rounds`)

Made-up facts (``resources/teach/bench_facts.json``: at least 100 over 8+ relations, each
with training phrasings, held-out rewordings, neighbour questions about real subjects,
and a reverse question) are taught as a person teaches them: one correction per fact,
made in a chat (the rejected reply is what the base model answered), ``round`` of them
per Teach, each Teach from the base with Hearth's defaults, through the real teach run
(:func:`app.teach.run.start_teach` and the training worker's ``run``, in this process;
the live adapter is written but llama.cpp's check of it is left out). Then the taught
adapter answers, greedily, to the end of the turn:

- **efficacy**: the trained question carries the fact's target;
- **rewordings**: the two held-out rewordings carry it (never trained, never Hearth's);
- **neighbour locality**: neighbour questions keep the base's answer and say no taught
  target (:func:`app.teach.judge.departs`);
- **reverse**: the fact asked backwards names the subject (reported; a known limit of
  fine-tuning, the "reversal curse");
- **general changed**, **stops**: the gate's own measures on the held-out everyday set;
- **seconds per correction**: the whole teach run (load to gate) over the facts taught.

Then the poison sets (``resources/teach/poison.json``) go through the same path; each
must be refused, by the preflight or by the gate, and the reason is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from app.chat.corrections import CorrectionStore
from app.finetune.runs.folder import RunFolder
from app.finetune.settings import ExportSettings
from app.teach import judge
from app.teach import run as teach_run
from app.teach.run import TeachError, start_teach, teach_settings
from app.workspace import Workspace, open_workspace
from backends.training import teach_gate


class QuietEmit:
    """The worker's emitter, kept in memory: the benchmark prints only its result."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float]] = []
        self.parent_gone = False
        self.logs: list[str] = []

    def __call__(self, event: Any) -> None:
        from app.finetune import protocol as tp

        if isinstance(event, tp.Phase):
            self.phases.append((event.name, time.perf_counter()))
        elif isinstance(event, tp.Log | tp.Error):
            self.logs.append(event.message)


def load_facts() -> list[dict[str, Any]]:
    """The facts, relations interleaved: a round teaches a mix, as a person corrects."""
    text = resources.files("resources").joinpath("teach/bench_facts.json").read_text("utf-8")
    by_relation: dict[str, list[dict[str, Any]]] = {}
    for fact in json.loads(text)["facts"]:
        by_relation.setdefault(fact["relation"], []).append(fact)
    lists = list(by_relation.values())
    return [f[i] for i in range(max(map(len, lists))) for f in lists if i < len(f)]


def load_poison() -> dict[str, list[dict[str, str]]]:
    text = resources.files("resources").joinpath("teach/poison.json").read_text("utf-8")
    return {name: s["corrections"] for name, s in json.loads(text)["sets"].items()}


def _user(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}]


class Bench:
    """One model's benchmark: a scratch home, the base's answers, the teach rounds."""

    def __init__(self, model: Path, cache: Path) -> None:
        from backends.training.base_model import load_base

        self.root = Path(tempfile.mkdtemp(prefix="hearth-bench-teach-"))
        os.environ["HEARTH_CACHE"] = str(cache)
        self.cache = cache
        self.model_path = model
        self.ws: Workspace = open_workspace(self.root / "home", register_starter=False)
        # The base's reference answers are kept with the converted model between runs.
        shared = cache / "teach-reference"
        shared.mkdir(parents=True, exist_ok=True)
        (self.ws.home.root / "cache").mkdir(exist_ok=True)
        (self.ws.home.root / "cache" / "teach").symlink_to(shared)
        self.base_record = self.ws.library.register(model, "bench-base")
        self.base = load_base(model, dtype=torch.float32, cache_dir=cache)
        self.base.model.eval()
        self.device = torch.device("cpu")

    def answers(self, model: Any, questions: list[str], tokens: int = 64) -> list[str]:
        out = teach_gate.greedy(model, self.base.tokenizer, self.base.template,
                                [_user(q) for q in questions], self.device, tokens)
        return [r.text for r in out]

    def teach(self, corrections: list[tuple[str, str, str]],
              overrides: dict[str, Any] | None = None, keep: bool = False
              ) -> dict[str, Any]:
        """Make each (question, rejected, corrected) in a chat, press Teach, run it; the
        corrections made before are deleted first unless ``keep`` (teaching in rounds)."""
        from backends.training.teach_recipe import TeachRecipe

        store = CorrectionStore(self.ws.library.conn)
        for ex in store.list() if not keep else []:
            store.delete(ex.id)
        made = []
        for question, rejected, corrected in corrections:
            conv = self.ws.store.create(model=self.base_record.name)
            self.ws.store.add_message(conv.id, "user", question)
            wrong = self.ws.store.add_message(conv.id, "assistant", rejected)
            made.append(store.add_from_conversation(self.ws.store, wrong.id, corrected).id)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            settings = teach_settings().with_overrides(**overrides) if overrides else None
            plan = start_teach(self.ws.home, self.ws.library, store, self.base_record,
                               settings=settings,
                               export=ExportSettings(out_name="bench-taught", gguf=False,
                                                     live=True))
        except TeachError as exc:
            return {"refused_before_training": str(exc), "passed": False,
                    "seconds": round(time.perf_counter() - started, 1),
                    "correction_ids": made}
        emit = QuietEmit()
        folder = RunFolder(self.ws.home.runs / plan.run_id)
        code = TeachRecipe(folder, folder.spec(), emit, threading.Event()).run()
        seconds = time.perf_counter() - started
        summary = folder.summary()
        if code != 0 or summary is None or summary.teach is None:
            raise RuntimeError(f"the teach run failed: {emit.logs[-3:]}")
        report = summary.teach.to_json()  # with the benchmark's own figures beside it
        report.update(seconds=round(seconds, 1), adapter_dir=summary.adapter_dir,
                      cpu_seconds=round(time.process_time() - cpu, 1),
                      load_average=round(os.getloadavg()[0], 1),
                      run_id=plan.run_id, correction_ids=made, continues=plan.continues,
                      phases=summary.phase_seconds,
                      steps=summary.steps, train_seconds=summary.train_seconds,
                      stopped_early=[m for m in emit.logs if m.startswith("Stopping early")])
        return report

    def tuned(self, adapter_dir: str) -> Any:
        from peft import PeftModel

        from backends.training.base_model import load_base

        fresh = load_base(self.model_path, dtype=torch.float32, cache_dir=self.cache)
        model = PeftModel.from_pretrained(fresh.model, adapter_dir)
        model.eval()
        return model


def _rate(hits: int, total: int) -> float:
    return round(hits / total, 4) if total else 0.0


def score_round(bench: Bench, facts: list[dict[str, Any]], base_answers: dict[str, Any],
                report: dict[str, Any], earlier: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    """The taught adapter's answers to the round's probes, judged against the base's (and,
    teaching in rounds, to the facts taught in earlier rounds)."""
    model = bench.tuned(report["adapter_dir"])
    if earlier:
        again = bench.answers(model, [f["train"][0] for f in earlier])
        kept = sum(judge.carries(a, f["target"], "", f["train"][0])
                   for f, a in zip(earlier, again, strict=True))
    else:
        kept = 0
    keys = [judge.distinctive(f["target"], "", "") for f in facts]
    stable = base_answers["stable"]
    asked = {"train": [f["train"][0] for f in facts],
             "reworded": [q for f in facts for q in f["rewordings"]],
             "neighbours": [q for f in facts for q in f["neighbours"]],
             "reverse": [f["reverse"]["question"] for f in facts]}
    got = {k: bench.answers(model, qs) for k, qs in asked.items()}
    reworded_targets = [f["target"] for f in facts for _ in f["rewordings"]]
    out = {
        "efficacy": sum(judge.carries(a, f["target"], "", q) for f, q, a in
                        zip(facts, asked["train"], got["train"], strict=True)),
        "reworded": sum(judge.carries(a, t, "", q) for t, q, a in
                        zip(reworded_targets, asked["reworded"], got["reworded"], strict=True)),
        "neighbours_kept": sum(judge.counts(judge.departs(base_answers[q], a, "fact", q, keys),
                                            stable[q]) is None
                               for q, a in zip(asked["neighbours"], got["neighbours"],
                                               strict=True)),
        "neighbours_unchanged": sum(judge.departs(base_answers[q], a, "fact", q, keys) is None
                                    for q, a in zip(asked["neighbours"], got["neighbours"],
                                                    strict=True)),
        "reverse": sum(judge.carries(a, f["reverse"]["target"], "", q) for f, q, a in
                       zip(facts, asked["reverse"], got["reverse"], strict=True)),
        "n": len(facts), "n_reworded": len(asked["reworded"]),
        "earlier_kept": kept, "n_earlier": len(earlier or []),
        "n_neighbours": len(asked["neighbours"]),
        "examples": [{"q": q, "a": a} for q, a in zip(asked["reworded"][:2],
                                                      got["reworded"][:2], strict=True)],
        "harmed_neighbours": [{"q": q, "base": base_answers[q], "taught": a} for q, a in
                              zip(asked["neighbours"], got["neighbours"], strict=True)
                              if judge.departs(base_answers[q], a, "fact", q, keys)][:3]}
    del model
    return out


def base_reference(bench: Bench, facts: list[dict[str, Any]]) -> dict[str, Any]:
    """The base's answers to the facts' questions and neighbours, with their stability.

    Kept in the cache beside the converted model (keyed by the model file): four greedy
    answers per question (three of them perturbed) take minutes for a hundred facts.
    """
    from app.paths import file_key

    path = bench.cache / "teach-bench" / f"{file_key(bench.model_path)}.json"
    try:
        known: dict[str, dict[str, Any]] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        known = {}
    wanted = [f["train"][0] for f in facts] + [q for f in facts for q in f["neighbours"]]
    questions = [q for q in dict.fromkeys(wanted) if q not in known]
    if questions:
        replies = teach_gate.greedy(bench.base.model, bench.base.tokenizer,
                                    bench.base.template, [_user(q) for q in questions],
                                    bench.device)
        teach_gate.mark_stable(bench.base.model, bench.base.tokenizer, bench.base.template,
                               replies, questions, ["fact"] * len(questions), bench.device)
        known.update({q: {"text": r.text, "stable": r.stable}
                      for q, r in zip(questions, replies, strict=True)})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known), "utf-8")
    base_answers: dict[str, Any] = {q: known[q]["text"] for q in wanted}
    base_answers["stable"] = {q: known[q]["stable"] for q in wanted}
    return base_answers


def round_record(report: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """One Teach's gate figures beside the benchmark's own scores."""
    return {"gate": {k: report.get(k) for k in (
        "passed", "reasons", "learned", "total", "reworded", "paraphrases",
        "neighbours_kept", "neighbours_total", "general_changed", "general_total",
        "general_unstable", "stops", "drift", "seconds", "steps", "train_seconds",
        "stopped_early", "phases", "general_answers", "earlier_kept", "earlier_total",
        "continues", "cpu_seconds", "load_average")},
        "general_harmed": [{"q": h["prompt"], "why": h["why"], "base": h["base"],
                            "taught": h["answer"]} for h in report.get("harmed", [])
                           if h["kind"] == "general"][:5],
        **scored}


def run_facts(bench: Bench, facts: list[dict[str, Any]], round_size: int,
              say: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    base_answers = base_reference(bench, facts)
    rounds = []
    for start in range(0, len(facts), round_size):
        chunk = facts[start:start + round_size]
        report = bench.teach([(f["train"][0], base_answers[f["train"][0]], f["answer"])
                              for f in chunk], overrides)
        scored = score_round(bench, chunk, base_answers, report)
        rounds.append(round_record(report, scored))
        say(f"round {len(rounds)}: efficacy {scored['efficacy']}/{scored['n']}, reworded "
            f"{scored['reworded']}/{scored['n_reworded']}, neighbours kept "
            f"{scored['neighbours_kept']}/{scored['n_neighbours']}, general changed "
            f"{report.get('general_changed')}/{report.get('general_total')}, gate "
            f"{'passed' if report.get('passed') else 'refused'}, {report['seconds']} s")
    return summarize(rounds)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(r[key] for r in rounds)

    gates = [r["gate"] for r in rounds]
    facts = total("n")
    return {
        "facts": facts, "rounds": len(rounds),
        "efficacy": _rate(total("efficacy"), facts),
        "reworded": _rate(total("reworded"), total("n_reworded")),
        "neighbour_locality": _rate(total("neighbours_kept"), total("n_neighbours")),
        "neighbours_unchanged": _rate(total("neighbours_unchanged"), total("n_neighbours")),
        "reverse": _rate(total("reverse"), facts),
        "general_changed": _rate(sum(g["general_changed"] or 0 for g in gates),
                                 sum(g["general_total"] or 0 for g in gates)),
        "stops": _rate(sum(g["stops"] or 0 for g in gates), sum(g["total"] or 0 for g in gates)),
        "gate_passed": sum(bool(g["passed"]) for g in gates),
        "seconds_per_correction": round(sum(g["seconds"] for g in gates) / max(1, facts), 1),
        "round_seconds": [g["seconds"] for g in gates],
        "details": rounds}


def run_poison(bench: Bench, say: Any) -> dict[str, Any]:
    out = {}
    for name, items in load_poison().items():
        questions = list(dict.fromkeys(i["question"] for i in items))
        base = dict(zip(questions, bench.answers(bench.base.model, questions), strict=True))
        report = bench.teach([(i["question"], base[i["question"]], i["answer"]) for i in items])
        refused = not report.get("passed")
        why = report.get("refused_before_training") or "; ".join(report.get("reasons") or [])
        out[name] = {"refused": refused, "why": why,
                     "general_changed": report.get("general_changed"),
                     "general_total": report.get("general_total"),
                     "seconds": report.get("seconds")}
        say(f"poison {name}: {'refused' if refused else 'ACCEPTED'} ({why[:160]})")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--facts", type=int, default=0, help="how many facts (0: all)")
    parser.add_argument("--round", type=int, default=10, help="corrections per Teach")
    parser.add_argument("--sequential", action="store_true",
                        help="teach in rounds, each continuing the last accepted version")
    parser.add_argument("--no-poison", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--neighbours", type=int, default=None,
                        help="neighbour questions rehearsed per correction (experiments)")
    parser.add_argument("--settings", type=json.loads, default=None,
                        help="LoRA settings over Teach's defaults, as JSON (experiments)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.neighbours is not None:
        teach_run.REHEARSED_NEIGHBOURS = args.neighbours
    facts = load_facts()
    facts = facts[:args.facts] if args.facts else facts

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    bench = Bench(args.model, args.cache)
    started = time.perf_counter()
    try:
        if args.sequential:
            from backends.bench.teach_rounds import run_rounds

            scores = run_rounds(bench, facts, args.round, say)
        else:
            scores = run_facts(bench, facts, args.round, say, args.settings)
        result: dict[str, Any] = {"model": args.model.name, "round": args.round, **scores}
        if not args.no_poison:
            result["poison"] = run_poison(bench, say)
    finally:
        bench.ws.close()
        shutil.rmtree(bench.root, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_average"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2 if args.json else None))


if __name__ == "__main__":
    main()
