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

What it measures becomes a :class:`app.teach.records.GateReport` by the verdict's rules
(:mod:`app.teach.verdict`), which need no model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.chat.template import ChatTemplate
from app.chat.tool_prompt import shape, shown_reply
from app.teach import judge
from app.teach.limits import GateLimits
from app.teach.records import (
    CaseResult,
    GateReport,
    GeneralAnswer,
    HarmedAnswer,
    HarmKind,
    Messages,
    NeighbourAnswer,
    Paraphrase,
    ReferenceCost,
    Reply,
    TeachCase,
)
from app.teach.reference import ReferenceSet, making, read_sets, write_sets
from app.teach.verdict import verdict
from backends.training.data import Tokenized, control_tokens

MAX_NEW_TOKENS = 40
"""A reference answer's length: its first sentences are what the judge compares."""
TAUGHT_TOKENS = 64
"""A taught answer must end within this many tokens (a corrected reply is a sentence or
two; a version that loops runs into it)."""
GEN_BATCH = 64
DRIFT_REPLIES = 30
"""The teacher-forced diagnostic is measured on this many of the everyday replies, evenly
spread: on all 120 it cost as much as answering them (one forward pass over prompt and
reply each), for a figure no verdict reads. On three perturbed starters 30 replies (1,093
positions) gave 10.9, 6.6 and 21.7 % where all 120 gave 11.1, 5.4 and 21.3 %, in a
quarter of the time (BENCHMARKS.md, "Teach's drift diagnostic on a sample")."""

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


def prompt_ids(tokenizer: Any, template: ChatTemplate, messages: Messages,
               tools: str = "", defuse: Callable[[Any], Any] | None = None) -> list[int]:
    """The prompt as the chat writes it (:func:`app.chat.tool_prompt.shape`): with
    ``tools`` (OpenAI's definitions as JSON text) the way this template takes them."""
    shaped, variable = shape(messages, tools, template.text,
                             defuse or control_tokens(tokenizer).defuse)
    text = template.render(shaped, add_generation_prompt=True, tools=variable)
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


SHARED_PREFIX_MIN = 8
"""A batch's prompts that open with this many tokens in common (the template's system
prompt: 24 of the starter's ~40) share one pass over them (:func:`greedy`)."""


def shared_prefix(rows: list[list[int]]) -> int:
    """How many opening tokens every row has in common, leaving each at least one of its
    own (the pass over its own tokens gives its first reply token's logits)."""
    if not rows:
        return 0
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for i in range(max(0, n)):
        if any(r[i] != first[i] for r in rows):
            return i
    return max(0, n)


@torch.no_grad()
def greedy(model: Any, tokenizer: Any, template: ChatTemplate,
           prompts: list[Messages], device: torch.device,
           max_new_tokens: int = MAX_NEW_TOKENS, tools: list[str] | None = None
           ) -> list[Reply]:
    """Greedy replies, batched with left padding; ``tools[i]`` are the tools offered
    with prompt ``i`` (a correction of a call is asked as the chat asked it).

    Written out (not ``generate``) so that the same loop serves a plain and a PEFT model
    and stops on the template's end of turn as well as on EOS. The opening every prompt
    of a batch shares (the template's system prompt) is run once and its cache given to
    each row, its padding placed after it: on the starter the prompts' pass was 39 % of
    the time, 60 % of its tokens that opening (BENCHMARKS.md, "Teach's answers with a
    shared opening"). Each set is cut into the same batches whatever the model, so the
    base and the taught model see the same shapes.
    """
    offered = tools or [""] * len(prompts)
    defuse = control_tokens(tokenizer).defuse
    stops = set(stop_ids(tokenizer, template))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out: list[Reply] = []
    for start in range(0, len(prompts), GEN_BATCH):
        chunk = [prompt_ids(tokenizer, template, m, t, defuse) for m, t in
                 zip(prompts[start:start + GEN_BATCH], offered[start:start + GEN_BATCH],
                     strict=True)]
        common = shared_prefix(chunk)
        if common < SHARED_PREFIX_MIN:
            common = 0
        past = None
        if common:
            opening = model(input_ids=torch.tensor([chunk[0][:common]], device=device),
                            use_cache=True, logits_to_keep=1)
            past = opening.past_key_values
            past.batch_repeat_interleave(len(chunk))
        own = [ids[common:] for ids in chunk]
        width = max(len(ids) for ids in own)
        step_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in own],
                                device=device)
        mask = torch.tensor([[1] * common + [0] * (width - len(ids)) + [1] * len(ids)
                             for ids in own], device=device)
        replies: list[list[int]] = [[] for _ in chunk]
        done = [False] * len(chunk)
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
            out.append(Reply(ids, reply, stopped,
                             tokenizer.decode(reply, skip_special_tokens=True).strip()))
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
                replies: list[Reply], prompts: list[str], kinds: list[str],
                device: torch.device) -> None:
    """Set each reply's ``stable``: whether the base, perturbed each way, still answers
    the same in substance."""
    if not replies:
        return
    for r in replies:
        r.stable = True
    for seed in PERTURBATIONS:
        # An answer one perturbation changed is unstable whatever the next ones say:
        # only the rest are asked again (the starter's 120 everyday prompts: 120, 101,
        # 89, the same 83 stable as asking all three times).
        left = [i for i, r in enumerate(replies) if r.stable]
        nudged = greedy(Perturbed(model, seed=seed), tokenizer, template,
                        [[{"role": "user", "content": prompts[i]}] for i in left], device)
        for i, n in zip(left, nudged, strict=True):
            r = replies[i]
            r.stable = judge.departs(r.text, n.text, kinds[i], prompts[i]) is None


def reference_replies(model: Any, tokenizer: Any, template: ChatTemplate,
                      prompts: list[str], device: torch.device, cache: Path | None,
                      name: str, kinds: list[str] | None = None) -> list[Reply]:
    """The base model's greedy replies to ``prompts``, from ``cache`` when it has them;
    with ``kinds``, each marked stable or not (:class:`Perturbed`).

    Each set (``name``) is generated in its own batches, in the order the gate asks it
    again: the same batch shapes give the same numerics, so a reply the tuning did not
    touch comes out identical.
    """
    wanted = ReferenceSet(prompts, kinds, MAX_NEW_TOKENS, [PERTURBATION_SCALE, *PERTURBATIONS])
    with making(cache):
        sets = read_sets(cache)
        found = sets.get(name)
        if found is not None and replace(found, replies=[]) == wanted:
            return found.replies
        replies = greedy(model, tokenizer, template,
                         [[{"role": "user", "content": p}] for p in prompts], device)
        if kinds is not None:
            mark_stable(model, tokenizer, template, replies, prompts, kinds, device)
        if cache is not None:
            sets[name] = replace(wanted, replies=replies)
            write_sets(cache, sets)
    return replies


def rehearsal_records(replies: list[Reply]) -> list[Tokenized]:
    """Training records that ask the model to answer as the base did.

    A reply cut at the token limit is kept too (its tokens are still the base's own
    choices; it simply has no end of turn to learn): long replies are what keeps the
    model from adopting the corrections' short style everywhere.
    """
    records = []
    for i, r in enumerate(replies):
        if not r.reply_ids:
            continue
        ids = r.prompt_ids + r.reply_ids
        target = [False] * len(r.prompt_ids) + [True] * len(r.reply_ids)
        records.append(Tokenized(ids=ids, target=target, line=-(i + 1)))
    return records


# ----------------------------------------------------------------- measuring


def _forward_logits(model: Any, ids: list[int], device: torch.device) -> torch.Tensor:
    out = model(input_ids=torch.tensor([ids], device=device), use_cache=False)
    logits: torch.Tensor = out.logits[0].float()
    return logits


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
def drift(model: Any, replies: list[Reply], device: torch.device) -> dict[str, float]:
    """A diagnostic: the share of the base's next-token choices (teacher-forced on its own
    general replies) that the tuning changed, and the tuned model's NLL of them. Not a
    verdict: a changed first token counts as one token in thirty."""
    changed = total = 0
    nll = 0.0
    model.eval()
    for r in replies:
        if not r.reply_ids:
            continue
        ids = r.prompt_ids + r.reply_ids
        first = len(r.prompt_ids) - 1
        logits = _forward_logits(model, ids, device)[first:len(ids) - 1]
        targets = torch.tensor(r.reply_ids, device=logits.device)
        changed += int((logits.argmax(-1) != targets).sum())
        total += len(r.reply_ids)
        nll += float(F.cross_entropy(logits, targets, reduction="sum"))
    return {"changed": changed / max(1, total), "nll": nll / max(1, total),
            "positions": total}


def question_of(messages: Messages) -> str:
    return " ".join(m["content"] for m in messages if m["role"] == "user")


def case_key(case: TeachCase) -> list[str]:
    # A call's words too (its tool and arguments): an everyday answer, asked without
    # tools, that now says them has leaked the correction.
    return judge.distinctive(shown_reply(case.chosen, case.calls),
                             shown_reply(case.rejected, case.rejected_calls), case.question)


@dataclass
class GateInputs:
    """What the gate checks: the run's cases (app.teach.run.make_case), the base model's
    answers to the held-out everyday prompts and to the cases' neighbour questions."""

    cases: list[TeachCase]
    general: list[GeneralAnswer]
    """The held-out everyday prompts with the base's answer and whether it survives a
    knowledge-free perturbation (the taught ``answer`` is filled in by the gate)."""
    neighbour_base: dict[str, Reply]
    """The base's answer to every neighbour question the gate asks."""
    limits: GateLimits = field(default_factory=GateLimits)
    check_replies: list[Reply] = field(default_factory=list)
    """The base's token-level replies (for the drift diagnostic)."""
    reference: ReferenceCost | None = None
    """What the base's reference answers cost this run (the report keeps it)."""


def learned_count(model: Any, tokenizer: Any, template: ChatTemplate,
                  cases: list[TeachCase], device: torch.device) -> int:
    """How many corrections the model now answers with (the early-stop check)."""
    answers = greedy(model, tokenizer, template, [c.prompt for c in cases], device,
                     max_new_tokens=TAUGHT_TOKENS, tools=[c.tools for c in cases])
    return sum(judge.answered(c, a.text) for c, a in zip(cases, answers, strict=True))


def _prefers(model: Any, tokenizer: Any, template: ChatTemplate, case: TeachCase,
             max_seq_len: int, device: torch.device) -> bool | None:
    """Whether the model finds the corrected reply likelier than the rejected one."""
    from app.finetune.dataset_records import Example
    from backends.training.data import tokenize_examples

    if not case.rejected.strip() and not case.rejected_calls:
        return None
    pair = tokenize_examples(
        [Example(0, messages=[*case.prompt, case.reply(chosen)], tools=case.tools)
         for chosen in (True, False)], tokenizer, template, max_seq_len,
        tokenizer.eos_token or "")
    if len(pair.records) != 2:
        return None
    chosen_lp, rejected_lp = (mean_logprob(model, r, device) for r in pair.records)
    return chosen_lp > rejected_lp


def run_gate(model: Any, tokenizer: Any, template: ChatTemplate, max_seq_len: int,
             inputs: GateInputs, device: torch.device) -> GateReport:
    """The report: every measure, each harmed answer beside the base's, and the verdict."""
    model.eval()
    cases = inputs.cases
    keys = [case_key(c) for c in cases]
    answers = greedy(model, tokenizer, template, [c.prompt for c in cases], device,
                     max_new_tokens=TAUGHT_TOKENS, tools=[c.tools for c in cases])
    reworded_at = [(i, p) for i, c in enumerate(cases) for p in c.rewordings]
    neighbour_at = [(i, q) for i, c in enumerate(cases) for q in c.neighbours
                    if q in inputs.neighbour_base]
    reworded = greedy(model, tokenizer, template, [p for _, p in reworded_at], device,
                      tools=[cases[i].tools for i, _ in reworded_at])
    near = greedy(model, tokenizer, template,
                  [[{"role": "user", "content": q}] for _, q in neighbour_at], device)
    general = greedy(model, tokenizer, template,
                     [[{"role": "user", "content": g.prompt}] for g in inputs.general],
                     device)
    out_cases = []
    for i, (case, answer) in enumerate(zip(cases, answers, strict=True)):
        q = case.question
        carried = judge.answered(case, answer.text)
        prefers = _prefers(model, tokenizer, template, case, max_seq_len, device)
        out_cases.append(CaseResult(
            id=case.id, source=case.source, question=q,
            chosen=shown_reply(case.chosen, case.calls),
            answer=answer.text, stops=answer.stopped and not judge.loops(answer.text),
            prefers_chosen=prefers, carried=carried,
            learned=carried and prefers is not False,
            paraphrases=[Paraphrase(question_of(p), a.text, judge.answered(case, a.text))
                         for (j, p), a in zip(reworded_at, reworded, strict=True) if j == i]))
    harmed: list[HarmedAnswer] = []
    for (i, q), a in zip(neighbour_at, near, strict=True):
        base = inputs.neighbour_base[q]
        why = judge.counts(judge.departs(base.text, a.text, "fact", q, keys), base.stable)
        out_cases[i].neighbours.append(NeighbourAnswer(q, base.text, a.text, why is None, why))
        if why:
            harmed.append(HarmedAnswer(HarmKind.NEIGHBOUR, q, base.text, a.text, why))
    answers_given = []
    for g, a in zip(inputs.general, general, strict=True):
        answers_given.append(replace(g, answer=a.text))
        why = judge.counts(judge.departs(g.base, a.text, g.kind, g.prompt, keys), g.stable)
        if why:
            harmed.append(HarmedAnswer(HarmKind.GENERAL, g.prompt, g.base, a.text, why))
    sample = inputs.check_replies[::max(1, len(inputs.check_replies) // DRIFT_REPLIES)]
    measured = drift(model, sample, device) if sample else None
    report = verdict(out_cases, harmed, len(inputs.general), inputs.limits, measured)
    report.general_unstable = sum(not g.stable for g in inputs.general)
    report.general_answers = answers_given  # every one, base beside taught (the record)
    return report
