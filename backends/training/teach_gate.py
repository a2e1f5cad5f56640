"""Teach's rehearsal and gate, measured with PyTorch inside the training worker.

A correction must take (*learned*), carry over to other wordings of the same question
(*reworded*), and leave everything else alone (*neighbours kept*, *general answers
unchanged*) — the efficacy, generalization and locality of the knowledge-editing
literature — and each taught answer must end (*stops*). All of it is judged on
free-running greedy answers, tuned against base, the way the person will read them
(:mod:`app.teach.judge`): teacher-forced token agreement let a refusal collapse pass,
because an answer whose first token changes counts as one changed token in thirty. That
*drift* is still reported, as a diagnostic only.

The base model's answers feed the *rehearsal* too: its replies to a separate set of
everyday prompts and to neighbour questions the gate never asks are mixed into training,
so the model keeps answering them as before while it learns the corrections. The
everyday answers are generated once per base model and cached.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.chat.template import ChatTemplate
from app.teach import judge
from app.teach.limits import GateLimits
from backends.training.data import Tokenized

MAX_NEW_TOKENS = 40
"""A reference answer's length: its first sentences are what the judge compares."""
TAUGHT_TOKENS = 64
"""A taught answer must end within this many tokens (a corrected reply is a sentence or
two; a version that loops runs into it)."""
GEN_BATCH = 64

# ------------------------------------------------------------------ generation


def stop_ids(tokenizer: Any, template: ChatTemplate) -> list[int]:
    """Token ids that end a reply: the tokenizer's EOS and the template's end of turn."""
    ids = set()
    for token in (tokenizer.eos_token, template.eos_token, "<|im_end|>", "<|eot_id|>",
                  "<end_of_turn>"):
        if not token:
            continue
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return sorted(ids)


def prompt_ids(tokenizer: Any, template: ChatTemplate, messages: list[dict[str, str]]
               ) -> list[int]:
    text = template.render(messages, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


@torch.no_grad()
def greedy(model: Any, tokenizer: Any, template: ChatTemplate,
           prompts: list[list[dict[str, str]]], device: torch.device,
           max_new_tokens: int = MAX_NEW_TOKENS) -> list[dict[str, Any]]:
    """Greedy replies, batched with left padding: ``{prompt_ids, reply_ids, text, stopped}``.

    Written out (not ``generate``) so that the same loop serves a plain and a PEFT model
    and stops on the template's end of turn as well as on EOS.
    """
    stops = set(stop_ids(tokenizer, template))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out: list[dict[str, Any]] = []
    for start in range(0, len(prompts), GEN_BATCH):
        chunk = [prompt_ids(tokenizer, template, m) for m in prompts[start:start + GEN_BATCH]]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in chunk],
                                 device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in chunk],
                            device=device)
        replies: list[list[int]] = [[] for _ in chunk]
        done = [False] * len(chunk)
        past = None
        step_ids = input_ids
        for _ in range(max_new_tokens):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
            # Only the last position's logits are used: on the prompt's pass the output
            # head (hidden x vocabulary, 49,152 words for SmolLM2) ran over every position.
            result = model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                           past_key_values=past, use_cache=True, logits_to_keep=1)
            past = result.past_key_values
            nxt = result.logits[:, -1, :].float().argmax(-1)
            for i, tok in enumerate(nxt.tolist()):
                if done[i]:
                    continue
                replies[i].append(tok)
                if tok in stops:
                    done[i] = True
            if all(done):
                break
            step_ids = nxt.unsqueeze(1)
            mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
        for ids, reply, stopped in zip(chunk, replies, done, strict=True):
            out.append({"prompt_ids": ids, "reply_ids": reply, "stopped": stopped,
                        "text": tokenizer.decode(reply, skip_special_tokens=True).strip()})
    if was_training:
        model.train()
    return out


PERTURBATIONS = (1, 2, 3)
"""Seeds of the knowledge-free perturbations an answer must survive to count as stable."""
PERTURBATION_SCALE = 2 ** -5
"""Relative noise on every weight matrix: on SmolLM2-135M it changes 11 % of the base's
next-token choices (teacher-forced), about as many as a default Teach run (13 %)."""


class Perturbed:
    """The model with every weight matrix nudged by random noise of a teach run's size.

    A small model's greedy answer to a question it does not really know is a coin toss:
    three random perturbations of this size (no knowledge in them) changed 37 of the 120
    everyday answers of SmolLM2-135M, each a different 14-21. Such an answer cannot show
    what teaching changed, so the gate asks the base under each perturbation first and
    counts an answer as *stable* only when it survives them all; on an unstable one only
    a refusal, a loop or a leaked correction counts (:func:`app.teach.judge.counts`).
    The weights are not touched: a perturbed copy is passed to ``functional_call``.
    """

    def __init__(self, model: Any, scale: float = PERTURBATION_SCALE, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.model = model
        self.params = {n: p * (1 + scale * torch.randn(p.shape, generator=g).to(p))
                       if p.dim() == 2 else p for n, p in model.named_parameters()}

    @property
    def training(self) -> bool:
        return bool(self.model.training)

    def eval(self) -> None:
        self.model.eval()

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def __call__(self, **kwargs: Any) -> Any:
        return torch.func.functional_call(self.model, self.params, args=(), kwargs=kwargs)


def mark_stable(model: Any, tokenizer: Any, template: ChatTemplate,
                replies: list[dict[str, Any]], prompts: list[str], kinds: list[str],
                device: torch.device) -> None:
    """Set each reply's ``stable``: whether the base, perturbed each way, still answers
    the same in substance."""
    if not replies:
        return
    for r in replies:
        r["stable"] = True
    asked = [[{"role": "user", "content": p}] for p in prompts]
    for seed in PERTURBATIONS:
        nudged = greedy(Perturbed(model, seed=seed), tokenizer, template, asked, device)
        for r, n, p, k in zip(replies, nudged, prompts, kinds, strict=True):
            r["stable"] = r["stable"] and judge.departs(r["text"], n["text"], k, p) is None


def reference_replies(model: Any, tokenizer: Any, template: ChatTemplate,
                      prompts: list[str], device: torch.device, cache: Path | None,
                      name: str, kinds: list[str] | None = None) -> list[dict[str, Any]]:
    """The base model's greedy replies to ``prompts``, from ``cache`` when it has them;
    with ``kinds``, each marked stable or not (:class:`Perturbed`).

    Each set (``name``) is generated in its own batches, in the order the gate asks it
    again: the same batch shapes give the same numerics, so a reply the tuning did not
    touch comes out identical.
    """
    sets: dict[str, Any] = {}
    if cache is not None and cache.exists():
        try:
            sets = json.loads(cache.read_text("utf-8")).get("sets", {})
            data = sets.get(name, {})
            if data.get("prompts") == prompts and data.get("kinds") == kinds and \
                    data.get("max_new_tokens") == MAX_NEW_TOKENS and \
                    data.get("perturbations") == [PERTURBATION_SCALE, *PERTURBATIONS]:
                return list(data["replies"])
        except (OSError, ValueError, KeyError, AttributeError):
            sets = {}
    replies = greedy(model, tokenizer, template,
                     [[{"role": "user", "content": p}] for p in prompts], device)
    if kinds is not None:
        mark_stable(model, tokenizer, template, replies, prompts, kinds, device)
    if cache is not None:
        sets[name] = {"prompts": prompts, "kinds": kinds, "max_new_tokens": MAX_NEW_TOKENS,
                      "perturbations": [PERTURBATION_SCALE, *PERTURBATIONS],
                      "replies": replies}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sets": sets}), "utf-8")
        os.replace(tmp, cache)
    return replies


def rehearsal_records(replies: list[dict[str, Any]]) -> list[Tokenized]:
    """Training records that ask the model to answer as the base did.

    A reply cut at the token limit is kept too (its tokens are still the base's own
    choices; it simply has no end of turn to learn): long replies are what keeps the
    model from adopting the corrections' short style everywhere.
    """
    records = []
    for i, r in enumerate(replies):
        if not r["reply_ids"]:
            continue
        ids = r["prompt_ids"] + r["reply_ids"]
        target = [False] * len(r["prompt_ids"]) + [True] * len(r["reply_ids"])
        records.append(Tokenized(ids=ids, target=target, line=-(i + 1)))
    return records


# ----------------------------------------------------------------- measuring


def _forward_logits(model: Any, ids: list[int], device: torch.device) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0].float()


@torch.no_grad()
def mean_logprob(model: Any, record: Tokenized, device: torch.device) -> float:
    """Mean log-probability per target token of a record (its reply, end of turn included)."""
    logits = _forward_logits(model, record.ids, device)
    at = [j - 1 for j in range(1, len(record.ids)) if record.target[j]]
    if not at:
        return 0.0
    logp = F.log_softmax(logits[at], dim=-1)
    targets = torch.tensor([record.ids[j + 1] for j in at], device=logp.device)
    return float(logp.gather(1, targets[:, None]).mean())


@torch.no_grad()
def drift(model: Any, replies: list[dict[str, Any]], device: torch.device
          ) -> dict[str, float]:
    """A diagnostic: the share of the base's next-token choices (teacher-forced on its own
    general replies) that the tuning changed, and the tuned model's NLL of them. Not a
    verdict: a changed first token counts as one token in thirty."""
    changed = total = 0
    nll = 0.0
    model.eval()
    for r in replies:
        if not r["reply_ids"]:
            continue
        ids = r["prompt_ids"] + r["reply_ids"]
        first = len(r["prompt_ids"]) - 1
        logits = _forward_logits(model, ids, device)[first:len(ids) - 1]
        targets = torch.tensor(r["reply_ids"], device=logits.device)
        changed += int((logits.argmax(-1) != targets).sum())
        total += len(r["reply_ids"])
        nll += float(F.cross_entropy(logits, targets, reduction="sum"))
    return {"changed": changed / max(1, total), "nll": nll / max(1, total),
            "positions": total}


def question_of(messages: list[dict[str, str]]) -> str:
    return " ".join(m["content"] for m in messages if m["role"] == "user")


def case_key(case: dict[str, Any]) -> list[str]:
    return judge.distinctive(case["chosen"], case.get("rejected") or "",
                             question_of(case["prompt"]))


@dataclass
class GateInputs:
    """What the gate checks: the run's cases (app.teach.run.make_case), the base model's
    answers to the held-out everyday prompts and to the cases' neighbour questions."""

    cases: list[dict[str, Any]]
    general: list[dict[str, Any]]
    """``{prompt, kind, base, stable}``: the held-out everyday prompts with the base's
    answer, and whether that answer survives a knowledge-free perturbation."""
    neighbour_base: dict[str, dict[str, Any]]
    """The base's answer (``text``, ``stable``) to every neighbour question the gate asks."""
    limits: GateLimits = field(default_factory=GateLimits)
    check_replies: list[dict[str, Any]] = field(default_factory=list)
    """The base's token-level replies (for the drift diagnostic)."""
    reference: dict[str, Any] = field(default_factory=dict)
    """``{seconds, cached}``: what the base's reference answers cost this run (the
    estimate before the next Teach prices a first run by it: app.teach.estimate)."""


def learned_count(model: Any, tokenizer: Any, template: ChatTemplate,
                  cases: list[dict[str, Any]], device: torch.device) -> int:
    """How many corrections the model now answers with (the early-stop check)."""
    answers = greedy(model, tokenizer, template, [c["prompt"] for c in cases], device,
                     max_new_tokens=TAUGHT_TOKENS)
    return sum(judge.carries(a["text"], c["chosen"], c.get("rejected") or "",
                             question_of(c["prompt"])) for c, a in zip(cases, answers,
                                                                      strict=True))


def _prefers(model: Any, tokenizer: Any, template: ChatTemplate, case: dict[str, Any],
             max_seq_len: int, device: torch.device) -> bool | None:
    """Whether the model finds the corrected reply likelier than the rejected one."""
    from app.finetune.datasets import Example
    from backends.training.data import tokenize_examples

    rejected = case.get("rejected") or ""
    if not rejected.strip():
        return None
    pair = tokenize_examples(
        [Example(0, messages=[*case["prompt"], {"role": "assistant", "content": r}])
         for r in (case["chosen"], rejected)], tokenizer, template, max_seq_len,
        tokenizer.eos_token or "")
    if len(pair.records) != 2:
        return None
    chosen_lp, rejected_lp = (mean_logprob(model, r, device) for r in pair.records)
    return chosen_lp > rejected_lp


def run_gate(model: Any, tokenizer: Any, template: ChatTemplate, max_seq_len: int,
             inputs: GateInputs, device: torch.device) -> dict[str, Any]:
    """The report: every measure, each harmed answer beside the base's, and the verdict."""
    model.eval()
    cases = inputs.cases
    keys = [case_key(c) for c in cases]
    answers = greedy(model, tokenizer, template, [c["prompt"] for c in cases], device,
                     max_new_tokens=TAUGHT_TOKENS)
    reworded_at = [(i, p) for i, c in enumerate(cases) for p in c.get("rewordings", [])]
    neighbour_at = [(i, q) for i, c in enumerate(cases) for q in c.get("neighbours", [])
                    if q in inputs.neighbour_base]
    base_of = {q: r["text"] for q, r in inputs.neighbour_base.items()}
    reworded = greedy(model, tokenizer, template, [p for _, p in reworded_at], device)
    near = greedy(model, tokenizer, template,
                  [[{"role": "user", "content": q}] for _, q in neighbour_at], device)
    general = greedy(model, tokenizer, template,
                     [[{"role": "user", "content": g["prompt"]}] for g in inputs.general],
                     device)
    out_cases = []
    for i, (case, answer) in enumerate(zip(cases, answers, strict=True)):
        q = question_of(case["prompt"])
        rejected = case.get("rejected") or ""
        carried = judge.carries(answer["text"], case["chosen"], rejected, q)
        prefers = _prefers(model, tokenizer, template, case, max_seq_len, device)
        out_cases.append({
            "id": case.get("id"), "source": case.get("source", "correction"),
            "question": q, "chosen": case["chosen"], "answer": answer["text"],
            "stops": bool(answer["stopped"]) and not judge.loops(answer["text"]),
            "prefers_chosen": prefers, "carried": carried,
            "learned": carried and prefers is not False,
            "paraphrases": [{"prompt": question_of(p), "answer": a["text"],
                             "carried": judge.carries(a["text"], case["chosen"], rejected, q)}
                            for (j, p), a in zip(reworded_at, reworded, strict=True) if j == i],
            "neighbours": []})
    harmed: list[dict[str, Any]] = []
    for (i, q), a in zip(neighbour_at, near, strict=True):
        why = judge.counts(judge.departs(base_of[q], a["text"], "fact", q, keys),
                           inputs.neighbour_base[q].get("stable", True))
        out_cases[i]["neighbours"].append({"prompt": q, "base": base_of[q],
                                           "answer": a["text"], "kept": why is None,
                                           "why": why})
        if why:
            harmed.append({"kind": "neighbour", "prompt": q, "base": base_of[q],
                           "answer": a["text"], "why": why})
    answers_given = []
    for g, a in zip(inputs.general, general, strict=True):
        answers_given.append({"prompt": g["prompt"], "kind": g["kind"], "base": g["base"],
                              "stable": g.get("stable", True), "answer": a["text"]})
        why = judge.counts(judge.departs(g["base"], a["text"], g["kind"], g["prompt"], keys),
                           g.get("stable", True))
        if why:
            harmed.append({"kind": "general", "prompt": g["prompt"], "base": g["base"],
                           "answer": a["text"], "why": why})
    measured = drift(model, inputs.check_replies, device) if inputs.check_replies else None
    report = verdict(out_cases, harmed, len(inputs.general), inputs.limits, measured)
    report["general_unstable"] = sum(not g.get("stable", True) for g in inputs.general)
    report["general_answers"] = answers_given  # every one, base beside taught (the record)
    return report


def _culprits(cases: list[dict[str, Any]], harmed: list[dict[str, Any]]
              ) -> dict[Any, str]:
    """The corrections a harmed answer points to ((source, id): how to name it): the one
    whose words leaked into it, or the refusals taught where the harm is new refusals."""
    named: dict[Any, str] = {}
    for h in harmed:
        for c in cases:
            key = judge.distinctive(c["chosen"], "", c["question"])
            leaked = judge.leak(h["base"], h["answer"], [key]) is not None
            refusal = h["why"] == "now refuses" and judge.is_refusal(c["chosen"])
            if leaked or refusal:
                named.setdefault((c["source"], c["id"]),
                                 f"{c['source']} {c['id']} (“{c['question'][:50]}”)")
    return named


def verdict(cases: list[dict[str, Any]], harmed: list[dict[str, Any]], general_total: int,
            limits: GateLimits, measured: dict[str, float] | None) -> dict[str, Any]:
    """The counts, the reasons (naming the corrections at fault) and whether it passed."""
    earlier = [c for c in cases if c["source"] == "earlier"]
    kept_earlier = sum(c["learned"] for c in earlier)
    stops = sum(c["stops"] for c in cases)
    cases = [c for c in cases if c["source"] != "earlier"]
    total = len(cases)
    learned = sum(c["learned"] for c in cases)
    paras = [p for c in cases for p in c["paraphrases"]]
    neighbours = [n for c in cases for n in c["neighbours"]]
    kept = sum(n["kept"] for n in neighbours)
    general_changed = sum(h["kind"] == "general" for h in harmed)
    reasons = []
    if total and learned < limits.min_learned * total:
        missed = [c["question"][:50] for c in cases if not c["learned"]][:3]
        reasons.append(f"learned only {learned} of {total} corrections (at least "
                       f"{limits.min_learned:.0%} needed; not learned: "
                       + "; ".join(f"“{m}”" for m in missed) + ")")
    if earlier and kept_earlier < limits.min_earlier_kept * len(earlier):
        forgot = [c["question"][:50] for c in earlier if not c["learned"]][:3]
        reasons.append(f"forgot earlier corrections: {kept_earlier} of {len(earlier)} "
                       f"still answered (at least {limits.min_earlier_kept:.0%}; forgotten: "
                       + "; ".join(f"“{m}”" for m in forgot) + ")")
    if stops < limits.min_stops * (total + len(earlier)):
        reasons.append(f"{total + len(earlier) - stops} taught answers do not end (they "
                       "repeat or run on)")
    if neighbours and kept < limits.min_neighbours_kept * len(neighbours):
        reasons.append(f"neighbouring questions changed: kept {kept} of {len(neighbours)} "
                       f"(at least {limits.min_neighbours_kept:.0%} needed)")
    if general_total and general_changed > limits.max_general_changed * general_total:
        reasons.append(f"{general_changed} of {general_total} everyday answers changed "
                       f"(at most {limits.max_general_changed:.0%})")
    culprits = _culprits(cases, harmed) if reasons and harmed else {}
    if culprits:
        reasons.append("caused by " + ", ".join(list(culprits.values())[:5])
                       + ": remove or reword them, then teach again")
    report: dict[str, Any] = {
        "learned": learned, "total": total, "stops": stops,
        "earlier_kept": kept_earlier, "earlier_total": len(earlier),
        "generalized": sum(p["carried"] for p in paras), "paraphrases": len(paras),
        "reworded": sum(p["carried"] for p in paras),
        "neighbours_kept": kept, "neighbours_total": len(neighbours),
        "general_changed": general_changed, "general_total": general_total,
        "limits": limits.to_json(), "passed": not reasons, "reasons": reasons,
        "culprits": list(culprits.values()),
        "culprit_ids": [ident for source, ident in culprits if source == "correction"],
        "harmed": harmed, "cases": cases + earlier}
    if measured is not None:
        report.update(drift=round(measured["changed"], 5), nll=round(measured["nll"], 5),
                      drift_positions=measured["positions"])
    return report
