"""Teach's rehearsal and gate, measured with PyTorch inside the training worker.

A correction must take (*learned*), carry over to other wordings of the same question
(*generalizes*), and leave everything else alone (*kept*) — the efficacy, generalization
and specificity of the knowledge-editing literature. All three are measured here on the
tuned model itself, before anything is exported, so a model that would be worse never
reaches the library or the chat:

- **learned**: for each correction, the tuned model prefers the corrected reply over the
  rejected one (mean log-likelihood per token, so a short rejected reply does not win
  by being short) and its greedy answer carries the correction's distinctive words;
- **generalizes**: greedy answers to paraphrases of the question (written by Hearth
  from templates, app.finetune.teach) carry them too; reported, not required;
- **kept**: on general prompts the base model's own greedy replies are replayed
  (teacher-forced) through the base and the tuned model; *drift* is the share of those
  next-token choices the tuning changed. It must stay within the limit.

The base model's replies also feed the *rehearsal*: replies to a separate set of
prompts are mixed into training, so the model keeps answering them as before while it
learns the corrections. Both sets are generated once per base model and cached.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.chat.template import ChatTemplate
from backends.training.data import Tokenized

MAX_NEW_TOKENS = 32
GEN_BATCH = 64

_STOPWORDS = frozenset({
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "of", "in", "on", "at", "to",
    "for", "and", "or", "but", "it", "its", "this", "that", "with", "as", "by", "from", "i",
    "you", "he", "she", "we", "they", "my", "your", "our", "their", "me", "him", "her", "them",
    "his", "hers", "not", "no", "yes", "do", "does", "did", "so", "if", "than", "then",
    "there", "here", "what", "which", "who", "whom", "how", "why", "when", "where"})


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
            result = model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                           past_key_values=past, use_cache=True)
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


def reference_replies(model: Any, tokenizer: Any, template: ChatTemplate,
                      prompts: list[str], device: torch.device, cache: Path | None
                      ) -> list[dict[str, Any]]:
    """The base model's greedy replies to ``prompts``, from ``cache`` when it has them."""
    if cache is not None and cache.exists():
        try:
            data = json.loads(cache.read_text("utf-8"))
            if data.get("prompts") == prompts and data.get("max_new_tokens") == MAX_NEW_TOKENS:
                return data["replies"]
        except (OSError, ValueError, KeyError):
            pass
    replies = greedy(model, tokenizer, template,
                     [[{"role": "user", "content": p}] for p in prompts], device)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"prompts": prompts, "max_new_tokens": MAX_NEW_TOKENS,
                                   "replies": replies}), "utf-8")
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
    """How much the tuning changed the model's next-token choices on general replies.

    Each base reply is fed (teacher-forced) to the tuned model. The reply is the base
    model's greedy choice at every position, so ``changed`` — the share of positions
    where the tuned model's top-1 token differs — needs no second forward pass of the
    base. ``nll`` is the tuned model's mean negative log-likelihood of those tokens.
    """
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


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def carries(answer: str, chosen: str, rejected: str, prompt: str) -> bool:
    """Whether ``answer`` says what the correction says.

    The correction's distinctive words are those of the corrected reply that neither the
    rejected reply nor the question already contain ("Quillport" in "The capital of
    Zorbania is Quillport."); the answer must contain at least 70 % of them (all of
    them when there are one or two).
    """
    common = set(_words(rejected)) | set(_words(prompt)) | _STOPWORDS
    key = [w for w in dict.fromkeys(_words(chosen)) if w not in common]
    if not key:
        key = [w for w in dict.fromkeys(_words(chosen)) if w not in _STOPWORDS] or \
            _words(chosen)
    if not key:
        return False
    have = set(_words(answer))
    hits = sum(w in have for w in key)
    return hits == len(key) if len(key) <= 2 else hits / len(key) >= 0.7


@dataclass
class GateInputs:
    """What the gate checks, as written by app.finetune.teach into run.json's ``teach`` section."""

    cases: list[dict[str, Any]]
    """{prompt: messages, chosen, rejected, paraphrases: [messages], source, id}"""
    check_replies: list[dict[str, Any]]
    drift_limit: float
    min_learned: float


def run_gate(model: Any, tokenizer: Any, template: ChatTemplate, max_seq_len: int,
             inputs: GateInputs, device: torch.device) -> dict[str, Any]:
    """The report: learned n/N, generalizes g/G, drift vs its limit, and the verdict."""
    from app.finetune.datasets import Example
    from backends.training.data import tokenize_examples

    model.eval()
    eos = tokenizer.eos_token or ""
    answers = greedy(model, tokenizer, template, [c["prompt"] for c in inputs.cases], device)
    para_prompts = [(i, p) for i, c in enumerate(inputs.cases) for p in c.get("paraphrases", [])]
    para_answers = greedy(model, tokenizer, template, [p for _, p in para_prompts], device)
    cases = []
    for i, (case, answer) in enumerate(zip(inputs.cases, answers, strict=True)):
        question = " ".join(m["content"] for m in case["prompt"] if m["role"] == "user")
        rejected = case.get("rejected") or ""
        prefers = None
        if rejected.strip():
            pair = tokenize_examples(
                [Example(0, messages=[*case["prompt"], {"role": "assistant", "content": r}])
                 for r in (case["chosen"], rejected)], tokenizer, template, max_seq_len, eos)
            if len(pair.records) == 2:
                chosen_lp, rejected_lp = (mean_logprob(model, r, device) for r in pair.records)
                prefers = chosen_lp > rejected_lp
        carried = carries(answer["text"], case["chosen"], rejected, question)
        paras = [{"prompt": p[-1]["content"], "answer": a["text"],
                  "carried": carries(a["text"], case["chosen"], rejected, question)}
                 for (j, p), a in zip(para_prompts, para_answers, strict=True) if j == i]
        cases.append({"id": case.get("id"), "source": case.get("source", "correction"),
                      "question": question, "chosen": case["chosen"],
                      "answer": answer["text"], "prefers_chosen": prefers,
                      "carried": carried, "learned": carried and prefers is not False,
                      "paraphrases": paras})
    measured = drift(model, inputs.check_replies, device)
    learned = sum(c["learned"] for c in cases)
    total = len(cases)
    generalized = sum(p["carried"] for c in cases for p in c["paraphrases"])
    n_paraphrases = sum(len(c["paraphrases"]) for c in cases)
    reasons = []
    if measured["changed"] > inputs.drift_limit:
        reasons.append(f"general behaviour changed {measured['changed']:.1%}, more than the "
                       f"{inputs.drift_limit:.0%} limit")
    if total and learned < inputs.min_learned * total:
        reasons.append(f"learned only {learned} of {total} corrections (at least "
                       f"{inputs.min_learned:.0%} needed)")
    return {"learned": learned, "total": total, "generalized": generalized,
            "paraphrases": n_paraphrases, "drift": round(measured["changed"], 5),
            "drift_limit": inputs.drift_limit, "nll": round(measured["nll"], 5),
            "drift_positions": measured["positions"], "min_learned": inputs.min_learned,
            "passed": not reasons, "reasons": reasons, "cases": cases}
