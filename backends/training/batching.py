"""How a run's records become micro-batches: the order, the grouping, the layout.

Each micro-batch holds records of **similar length** (grouped within windows of the
shuffled epoch), one per row, right-padded to the longest: little padding, and plain
causal attention whose cost follows each record's length. The order is a pure function
of the seed and the epoch, so a resumed run sees the same batches. A micro-batch of long
records runs in parts within a token budget (the loss is a sum, so the parts add up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from app.finetune.plan import total_steps
from app.finetune.settings import LoraSettings
from backends.training.data import Tokenized


@dataclass
class Batch:
    """One micro-batch: its records as rows, right-padded to the longest of them."""

    input_ids: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    predict_at: torch.Tensor  # [T] flat positions (row * L + column) whose next token is a target
    targets: torch.Tensor  # [T]; IGNORE where only padding the count to a shape multiple
    n_tokens: int  # real tokens, padding not counted
    n_targets: int  # real targets


IGNORE = -100  # F.cross_entropy's ignore_index


def pack(records: list[Tokenized], multiple: int = 1) -> Batch:
    """Lay a micro-batch out as rows of ``[B, longest]`` with padding on the right.

    Right padding needs no attention mask: under the causal mask a real token never
    sees the padding after it, and nothing is predicted from a padded position. So
    attention runs as plain causal SDPA per row (its cost grows with each record's own
    length, not with that of a packed row holding all of them), and the plan groups
    records of similar length into a micro-batch so there is little padding to compute.

    ``multiple`` rounds the row length and the number of predicted positions up (see
    ``Trainer.shape_multiple``): oneDNN's bf16 matmuls compile a kernel for every new
    shape (8 ms each on the Sapphire Rapids VM, about 25 shapes per micro-batch), so a
    run whose every micro-batch has a new length pays that again and again.
    """
    longest = max(len(r.ids) for r in records)
    width = -(-longest // multiple) * multiple
    ids = torch.zeros(len(records), width, dtype=torch.long)
    predict_at: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    for row, record in enumerate(records):
        n = len(record.ids)
        ids[row, :n] = torch.tensor(record.ids)
        wanted = torch.tensor(record.target[1:], dtype=torch.bool).nonzero().flatten()
        predict_at.append(row * width + wanted)
        targets.append(ids[row, 1:n][wanted])
    n_targets = sum(len(t) for t in targets)
    extra = -(-n_targets // multiple) * multiple - n_targets
    if extra:
        predict_at.append(torch.zeros(extra, dtype=torch.long))
        targets.append(torch.full((extra,), IGNORE, dtype=torch.long))
    positions = torch.arange(width).expand(len(records), width)
    return Batch(input_ids=ids, position_ids=positions, predict_at=torch.cat(predict_at),
                 targets=torch.cat(targets), n_tokens=sum(len(r.ids) for r in records),
                 n_targets=n_targets)


def length_grouped(order: list[int], lengths: list[int], batch_size: int,
                   generator: torch.Generator) -> list[int]:
    """``order`` re-arranged so that each run of ``batch_size`` holds similar lengths.

    Within windows of 16 micro-batches (taken from the random order, so an epoch still
    mixes the data) the records are sorted by length, cut into micro-batches, and the
    micro-batches shuffled again: the shape of transformers' ``group_by_length``.
    """
    window = 16 * batch_size
    groups: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -lengths[i])
        groups += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    if len(groups) > 1:
        # The last, possibly short, micro-batch stays last so that every full one is full.
        keep = groups.pop() if len(groups[-1]) < batch_size else None
        groups = [groups[i] for i in torch.randperm(len(groups), generator=generator)]
        groups += [keep] if keep else []
    return [i for g in groups for i in g]


def within_budget(records: list[Tokenized], budget: int) -> list[list[Tokenized]]:
    """Split a micro-batch so that each part's padded size (rows x longest) stays within
    ``budget`` tokens; the loss is a sum over targets, so the parts add up to the whole."""
    parts: list[list[Tokenized]] = []
    current: list[Tokenized] = []
    for record in sorted(records, key=lambda r: -len(r.ids)):
        width = max([len(record.ids)] + [len(r.ids) for r in current])
        if current and width * (len(current) + 1) > budget:
            parts.append(current)
            current = []
        current.append(record)
    return parts + ([current] if current else [])


@dataclass
class Plan:
    """How the records map to steps; a pure function of the settings and record count."""

    n_records: int
    settings: LoraSettings
    lengths: list[int] | None = None
    """Token counts of the records: when given, micro-batches group similar lengths."""
    micro_per_epoch: int = field(init=False)
    steps_per_epoch: float = field(init=False)
    total_steps: int = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.micro_per_epoch = math.ceil(self.n_records / s.batch_size)
        self.steps_per_epoch = self.micro_per_epoch / s.grad_accumulation
        self.total_steps = total_steps(self.n_records, s)

    def epoch_order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n_records, generator=g).tolist()
        if self.lengths is None:
            return order
        return length_grouped(order, self.lengths, self.settings.batch_size, g)

    def micro_batch(self, index: int) -> list[int]:
        """Record indices of the ``index``-th micro-batch of the whole run."""
        epoch, within = divmod(index, self.micro_per_epoch)
        order = self.epoch_order(epoch)
        b = self.settings.batch_size
        return order[within * b:(within + 1) * b]

    def step_micro_batches(self, step: int) -> list[list[int]]:
        ga = self.settings.grad_accumulation
        return [self.micro_batch(step * ga + k) for k in range(ga)]

    def epoch_at(self, step: int) -> float:
        return step * self.settings.grad_accumulation / self.micro_per_epoch
