"""The fine-tune recall check (issue 23, item 8): the tuned model asked its own data.

Judged on the case it exists for: a tiny model taught one reply answers that question as
trained and not the one it was never taught, and before teaching it answers neither (a
run that learned nothing reads as a warning, not a success).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.finetune import recall
from app.finetune.datasets import Example
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import BaseRef, RunSpec, RunSummary

CAPITAL = "The capital of Velmora is Quillport."
LOOM = "The glimmerloom was invented by Ilse Marrowby in 1876."


def _chat(q: str, a: str, line: int = 0) -> Example:
    return Example(line=line, messages=[{"role": "user", "content": q},
                                        {"role": "assistant", "content": a}])


def _folder(tmp_path: Path, val: list[Example], train: list[Example]) -> RunFolder:
    folder = RunFolder(tmp_path / "home" / "runs" / "r1")
    folder.train_file.parent.mkdir(parents=True)
    for path, rows in ((folder.val_file, val), (folder.train_file, train)):
        path.write_text("".join(json.dumps(e.to_json()) + "\n" for e in rows), "utf-8")
    return folder


def _memorise(model, base, prompt: list[dict[str, str]], reply: str) -> None:
    """Overfit LoRA on one reply (its loss on the reply only)."""
    from backends.training import teach_gate

    tok = base.tokenizer
    ids = teach_gate.prompt_ids(tok, base.template, prompt)
    answer = tok(reply + "<|im_end|>", add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids + answer])
    labels = torch.tensor([[-100] * len(ids) + answer])
    torch.manual_seed(0)
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(80):
        optim.zero_grad()
        model(input_ids=x, labels=labels).loss.backward()
        optim.step()


def test_the_check_counts_a_learned_reply_an_unlearned_one_and_the_leaks(
        tiny_gguf: Path, hearth_cache: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from backends.training.base_model import load_base
    from backends.training.recall import RecallCheck

    base = load_base(tiny_gguf, cache_dir=hearth_cache)
    model = get_peft_model(base.model, LoraConfig(r=8, lora_alpha=16,
                                                  target_modules="all-linear"))
    taught = [{"role": "user", "content": "What is the capital of Velmora?"}]
    folder = _folder(tmp_path, val=[_chat("Who was the inventor of the glimmerloom?", LOOM)],
                     train=[_chat(taught[0]["content"], CAPITAL, 1),
                            _chat("Who invented the glimmerloom?", LOOM, 2)])
    spec = RunSpec(run_id="r1", base=BaseRef(name="tiny", path=str(tiny_gguf)),
                   cache_dir=str(tmp_path / "home" / "cache" / "base-models"))
    events: list[object] = []
    check = RecallCheck(folder, spec, base, torch.device("cpu"), events.append)

    before = check.run(model)  # LoRA starts at zero: the base itself
    assert (before.asked, before.answered) == (3, 0)
    assert (before.general_changed, before.general_total) == (0, 120), before.general_skipped
    assert before.warning() is not None and "Learn facts" in before.warning()

    _memorise(model, base, taught, CAPITAL)
    after = check.run(model)
    by_question = {e.question: e.carried for e in after.examples}
    assert by_question == {"What is the capital of Velmora?": True,
                           "Who invented the glimmerloom?": False,
                           "Who was the inventor of the glimmerloom?": False}
    assert (after.heldout_asked, after.heldout_answered) == (1, 0)
    assert (after.training_asked, after.training_answered) == (2, 1)
    assert after.warning() is None
    assert after.line().startswith("Answers as trained: 0 of 1 held-out questions, 1 of 2 "
                                   "training questions; everyday answers changed ")
    # Taught one reply by rote, it says it everywhere: the everyday check sees the leak.
    assert after.general_changed > 60
    assert "“quillport” from the data" in after.changed_examples[0]["why"]
    # The report travels in summary.json and comes back typed.
    again = RunSummary.from_json(RunSummary(run_id="r1", recall=after).to_json()).recall
    assert again == after and isinstance(again.examples[0], recall.RecallExample)

    check.budget_s = 0.0  # a model too slow for the everyday prompts: skipped, and said
    assert "not checked (it would take" in check.run(model).line()


def test_questions_are_held_out_first_then_spread_over_the_training_records() -> None:
    val = [_chat(f"Held out {i}?", f"Answer h{i}.") for i in range(30)]
    train = [_chat(f"Trained {i}?", f"Answer t{i}.") for i in range(100)]
    chosen = recall.choose_questions(val, train)
    assert len(chosen) == recall.MAX_ASKED
    assert [q.heldout for q in chosen] == [True] * 12 + [False] * 12
    assert chosen[12].question == "Trained 0?" and chosen[-1].question != "Trained 11?"
    few = recall.choose_questions(val[:2], train[:3])
    assert [q.heldout for q in few] == [True, True, False, False, False]
    # Teach's runs check on their training records: those are not held out.
    both = recall.choose_questions(train[:2], train[:2])
    assert [q.heldout for q in both] == [False, False]
    text = [Example(line=1, text="plain words")]
    assert recall.choose_questions(text, text) == []


def test_a_long_reply_is_judged_by_its_opening() -> None:
    """A 64-token answer holds a long reply's first sentences only: judged against the
    whole reply, a model that learned it would never count."""
    from app.teach import judge

    names = ["Ashvale", "Brindle", "Corrow", "Dunmere", "Elsby", "Fenwick", "Garth",
             "Holloway", "Ivers", "Jessop", "Kettering", "Lowther"]
    reply = "Quillport is the capital of Velmora. " + " ".join(
        f"Its district {i} is called {n}." for i, n in enumerate(names))
    q = recall.Question(prompt=[{"role": "user", "content": "Capital of Velmora?"}],
                        reply=reply, heldout=False)
    assert len(q.target.split()) <= recall.TARGET_WORDS
    learned = " ".join(reply.split()[:40])  # what 64 tokens of the learned reply hold
    assert not judge.carries(learned, reply, "", q.question)
    [judged] = recall.judge_answers([q], [learned])
    assert judged.carried
    [missed] = recall.judge_answers([q], ["The capital of Velmora is Brightwater."])
    assert not missed.carried


@pytest.mark.parametrize(("cached", "rate", "at_most"), [
    (True, None, 160.0), (False, None, 160.0 + recall.GENERAL_BUDGET_S), (True, 100.0, 14.0)])
def test_the_estimate_prices_the_check_within_its_budget(cached: bool, rate: float | None,
                                                         at_most: float) -> None:
    seconds = recall.check_seconds(135_000_000, 2, False, cached, rate=rate)
    assert 0 < seconds <= at_most
    one_pass = recall.RECALL_S_PER_GPARAM  # 1B on 2 cores: far over the budget
    assert recall.check_seconds(1_000_000_000, 2, False, False) <= \
        one_pass * (1 - recall.GENERAL_SHARE) + one_pass * recall.GENERAL_SHARE * 64 / 120 \
        + recall.GENERAL_BUDGET_S + 1e-6 < one_pass * (1 + recall.REFERENCE_PASSES)


def test_the_cli_ends_a_run_that_learned_nothing_with_the_warning(
        capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli.finetune import _print_summary

    report = recall.RecallReport(asked=12, answered=0, heldout_asked=1, general_changed=2,
                                 general_total=120)
    _print_summary(RunSummary(run_id="r", recall=report))
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == ("  Answers as trained: 0 of 1 held-out questions, 0 of 11 training "
                       "questions; everyday answers changed 2 of 120")
    assert out[-1].startswith("  WARNING: It answers none of the 12 questions")
    skipped = recall.RecallReport(skipped=recall.NO_CHAT)
    _print_summary(RunSummary(run_id="r", recall=skipped))
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"  Answers as trained: not checked ({recall.NO_CHAT})"
