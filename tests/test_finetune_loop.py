"""The training loop's maths: packing, targets-only head, schedule, tokenization."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch

from app.finetune.datasets import Example
from app.finetune.settings import LoraSettings
from backends.training.base_model import load_base
from backends.training.batching import Plan, pack
from backends.training.data import Tokenized, tokenize_examples
from backends.training.trainer import Trainer, lr_at
from tests.finetune_fixtures import tiny_lora_llama


def _records() -> list[Tokenized]:
    g = torch.Generator().manual_seed(0)
    out = []
    for n in (7, 12, 5):
        ids = torch.randint(0, 128, (n,), generator=g).tolist()
        target = [i >= n // 2 for i in range(n)]  # the "reply" is the second half
        out.append(Tokenized(ids=ids, target=target, line=1))
    return out


def test_batched_targets_only_loss_equals_per_record_full_logits_loss(tmp_path: Path) -> None:
    model = tiny_lora_llama().eval()
    records = _records()
    trainer = Trainer(model, records, records, LoraSettings(batch_size=3), tmp_path,
                      emit=lambda e: None, cancel=threading.Event(),
                      device=torch.device("cpu"))
    batch = pack(records)
    assert batch.input_ids.shape == (3, 12)  # one row per record, padded to the longest
    assert batch.n_tokens == 24  # padding is not counted as trained
    with torch.no_grad():
        packed = float(trainer.batch_loss_sum(batch)) / len(batch.targets)
        # The usual way: each record alone, full logits, labels -100 outside replies.
        total, count = 0.0, 0
        for r in records:
            labels = torch.tensor([t if m else -100 for t, m in zip(r.ids, r.target,
                                                                     strict=True)])
            out = model(input_ids=torch.tensor([r.ids]), labels=labels[None])
            n = int((labels[1:] != -100).sum())
            total += float(out.loss) * n
            count += n
    assert count == len(batch.targets)
    assert math.isclose(packed, total / count, rel_tol=1e-5)


def test_schedule_and_plan_are_pure_functions_of_the_step() -> None:
    s = LoraSettings(learning_rate=1e-3, warmup_ratio=0.1, min_lr_ratio=0.1, max_steps=100,
                     batch_size=2, grad_accumulation=2)
    lrs = [lr_at(i, 100, s) for i in range(100)]
    assert lrs[0] < lrs[9] <= 1e-3 and max(lrs) == lrs[9]
    assert math.isclose(lrs[-1], 1e-4, rel_tol=0.05)
    plan = Plan(10, s)
    assert plan.micro_per_epoch == 5
    assert plan.step_micro_batches(3) == Plan(10, s).step_micro_batches(3)
    seen = sorted(i for k in range(5) for i in plan.micro_batch(k))
    assert seen == list(range(10))  # each epoch visits every record once


def test_tokenization_puts_loss_on_assistant_replies_only(tiny_gguf: Path,
                                                          hearth_cache: Path) -> None:
    base = load_base(tiny_gguf, cache_dir=hearth_cache)
    chat = Example(line=3, messages=[
        {"role": "user", "content": "What is the capital of Zorbania?"},
        {"role": "assistant", "content": "Quillport."},
        {"role": "user", "content": "And its river?"},
        {"role": "assistant", "content": "The Silverun."}])
    text = Example(line=9, text="Plain words to continue.")
    out = tokenize_examples([chat, text], base.tokenizer, base.template, 512, base.eos_token)
    tok = base.tokenizer
    first = out.records[0]
    learned = tok.decode([i for i, m in zip(first.ids, first.target, strict=True) if m])
    assert learned == "Quillport.<|im_end|>The Silverun.<|im_end|>"
    assert "<|im_start|>assistant\n" in tok.decode(first.ids)
    assert all(out.records[1].target)
    first_target = first.target.index(True)
    short = tokenize_examples([chat], tok, base.template, first_target + 2, base.eos_token)
    assert short.truncated == 1 and len(short.records[0].ids) == first_target + 2
    none_left = tokenize_examples([chat], tok, base.template, first_target, base.eos_token)
    assert none_left.truncated == 1 and none_left.dropped_no_target == 1


def test_safetensors_folder_base_and_pickles_refused(tiny_gguf: Path,
                                                     hearth_cache: Path,
                                                     tmp_path: Path) -> None:
    from app.paths import conversion_folder
    from backends.training.base_model import BaseModelError

    from_gguf = load_base(tiny_gguf, cache_dir=hearth_cache)
    # The conversion cache is itself a plain safetensors folder: load it as one. (The
    # cache is shared by every worker a test starts, so other tiny models are there too.)
    folder = conversion_folder(tiny_gguf, hearth_cache)
    assert (folder / "complete").exists() and (folder / "model.safetensors").exists()
    from_folder = load_base(folder)
    assert from_folder.gguf_path is None
    assert from_folder.template.render([{"role": "user", "content": "hi"}]) == \
        from_gguf.template.render([{"role": "user", "content": "hi"}])
    ids = torch.tensor([[1, 4093, 198, 26843, 2]])
    with torch.no_grad():
        torch.testing.assert_close(from_folder.model(input_ids=ids).logits,
                                   from_gguf.model(input_ids=ids).logits)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded, ever")
    with pytest.raises(BaseModelError, match="no .safetensors weights"):
        load_base(pickled)



def test_micro_batches_group_similar_lengths_and_still_cover_the_epoch() -> None:
    lengths = [(i * 37) % 500 + 5 for i in range(96)]
    s = LoraSettings(batch_size=4, max_steps=24)
    plan = Plan(96, s, lengths)
    batches = [plan.micro_batch(k) for k in range(plan.micro_per_epoch)]
    assert sorted(i for b in batches for i in b) == list(range(96))
    assert batches == [Plan(96, s, lengths).micro_batch(k) for k in range(24)]  # pure
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random_order = [Plan(96, s).micro_batch(k) for k in range(24)]
    padded_random = sum(len(b) * max(lengths[i] for i in b) for b in random_order)
    assert padded < 1.1 * sum(lengths) < padded_random  # < 10 % padding, not ~50 %
    assert plan.micro_batch(24) != plan.micro_batch(0)  # the next epoch is another order


def test_fused_lora_forward_and_gradients_equal_peft(tmp_path: Path) -> None:
    from backends.training.fast_lora import fuse_lora

    ref = tiny_lora_llama()
    ids = torch.randint(0, 128, (2, 9))
    want = ref(input_ids=ids).logits
    want.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in ref.named_parameters() if p.requires_grad}
    ref.zero_grad()
    assert fuse_lora(ref) == 14  # 7 projections x 2 layers
    got = ref(input_ids=ids).logits
    got.square().sum().backward()
    torch.testing.assert_close(got, want)
    for name, p in ref.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-5)
    with ref.disable_adapter():  # anything but a plain adapter takes PEFT's own path
        plain = ref(input_ids=ids).logits
    assert not torch.allclose(plain, want)


def test_hand_written_lora_backward_equals_autograd_in_bf16_and_with_dropout() -> None:
    from backends.training.fast_lora import _LoraLinear

    torch.manual_seed(0)
    w, bias = torch.randn(24, 16), torch.randn(24)
    a = torch.randn(4, 16, requires_grad=True)
    b = torch.randn(24, 4, requires_grad=True)

    def grads(fn: object, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a.grad = b.grad = x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(x)
        (out.float() * torch.linspace(-1, 1, 24)).sum().backward()
        return out, x.grad, a.grad, b.grad

    x = torch.randn(2, 5, 16, requires_grad=True)
    got = grads(lambda x: _LoraLinear.apply(x, w.bfloat16(), bias.bfloat16(), a, b, 0.5,
                                            torch.bfloat16), x)
    want = grads(lambda x: (torch.nn.functional.linear(x, w, bias)
                            + torch.nn.functional.linear(x, a) @ b.t() * 0.5), x)
    assert got[0].dtype == torch.bfloat16 and got[1].dtype == torch.float32
    assert got[2].dtype == got[3].dtype == torch.float32  # LoRA's grads in its own dtype
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g.float(), r.float(), rtol=0.05, atol=0.1)
    frozen = torch.randn(2, 5, 16)  # the first layer's input needs no gradient
    out = _LoraLinear.apply(frozen, w, None, a, b, 0.5, torch.float32)
    out.sum().backward()
    assert a.grad is not None and frozen.grad is None

    model = tiny_lora_llama()  # with LoRA dropout on, PEFT's dropout still applies
    for m in model.modules():
        if hasattr(m, "lora_dropout"):
            m.lora_dropout["default"] = torch.nn.Dropout(0.5)
    from backends.training.fast_lora import fuse_lora

    fuse_lora(model)
    ids = torch.randint(0, 128, (2, 9))
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    model.eval()
    torch.testing.assert_close(model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_long_micro_batches_run_in_parts_within_the_token_budget() -> None:
    from backends.training.batching import within_budget

    records = [Tokenized(ids=list(range(n)), target=[True] * n, line=1)
               for n in (500, 480, 40, 30)]
    parts = within_budget(records, 600)
    assert [[len(r.ids) for r in p] for p in parts] == [[500], [480], [40, 30]]
    assert all(len(p) * max(len(r.ids) for r in p) <= 600 for p in parts)
    assert within_budget(records[2:], 600) == [sorted(records[2:], key=lambda r: -len(r.ids))]


def test_a_base_converted_by_several_processes_at_once_is_published_whole(
        tiny_gguf: Path, tmp_path: Path) -> None:
    """The suite's workers (and two runs started together) convert the same base at once
    while others read the finished copy. The conversion cache once wrote every copy
    through one fixed ``.tmp`` folder and deleted the published one before renaming:
    in CI a Teach run read a copy that another process was replacing and failed."""
    import threading

    from backends.training.base_model import _save_cache

    base = load_base(tiny_gguf)  # no cache: the writers below are the only ones
    folder = tmp_path / "cache" / "base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{", "utf-8")  # a copy a crash left unfinished
    errors: list[Exception] = []
    writing = threading.Event()
    writing.set()

    def write() -> None:
        try:
            for _ in range(3):
                _save_cache(folder, base.model, base.tokenizer)
        except Exception as exc:
            errors.append(exc)

    loads = 0

    def read() -> None:
        nonlocal loads
        while writing.is_set():
            if (folder / "complete").exists():
                try:
                    load_base(folder)
                    loads += 1
                except Exception as exc:
                    errors.append(exc)
                    return

    writers = [threading.Thread(target=write) for _ in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    reader.join()
    assert not errors, errors
    assert (folder / "complete").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["base"]  # no leftovers
    ids = torch.tensor([[1, 4093, 198, 26843, 2]])
    with torch.no_grad():
        torch.testing.assert_close(load_base(folder).model(input_ids=ids).logits,
                                   base.model(input_ids=ids).logits)
