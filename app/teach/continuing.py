"""Teaching in rounds: a new Teach continues the active version instead of starting over.

A person corrects a few replies, teaches, chats, corrects a few more, teaches again.
Trained from the base each time on every correction so far, round *k* costs *k* times
the first (ten rounds of ten: the tenth trains 100 corrections). So when the base has an
active version trained with the same LoRA shape, the next run starts from that version's
adapter, trains the corrections it does not know yet in all their forms, and replays
the earlier ones in their own words only (a bounded sample, so that a person with 1,000
corrections does not pay for all of them each time). The gate checks the new ones as
always and a bounded sample of the earlier ones, against the *base's* answers, so harm
cannot pile up round after round unseen. Measured in ``hearth bench teach --sequential``
(BENCHMARKS.md, "Teaching in rounds").

Without an active version (a first Teach, or after rolling back to the plain base), or
when the version's run or adapter is gone, or its LoRA shape differs, Teach trains from
the base on all corrections as before.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from app.chat.corrections import TrainingExample
from app.finetune.runs.folder import RunFolder
from app.finetune.settings import LoraSettings
from app.paths import HearthHome
from app.teach.versions import Version, VersionStore

REPLAYED = 50
"""Earlier corrections trained again (their own question only) in a continuing round.
Ten rounds of ten replay at most 90; beyond 50 a fresh random sample each round keeps
the round's cost bounded whatever the history's length."""
CHECKED = 40
"""Earlier corrections the gate asks again (their own question): a random sample of at
most this many, drawn first from those not replayed this round, so that the check is
not only of what was just trained."""
SHAPE = ("rank", "alpha", "target_modules", "layer_share")
"""The LoRA settings an adapter must share with the new run's to be continued."""


@dataclass
class Continuation:
    """Where a round starts and which corrections are new to it."""

    version: str
    adapter_dir: str
    new: list[TrainingExample]
    replayed: list[TrainingExample]
    checked: list[TrainingExample]


def _adapter_of(home: HearthHome, version: Version) -> str | None:
    try:
        summary = RunFolder.of(home, version.run_id).summary()
    except (OSError, ValueError):
        return None
    if summary is None or not summary.adapter_dir:
        return None
    path = Path(summary.adapter_dir)
    return str(path) if (path / "adapter_model.safetensors").is_file() else None


def same_shape(version: Version, settings: LoraSettings) -> bool:
    return all(getattr(version.settings, key) == getattr(settings, key) for key in SHAPE)


def continuation(home: HearthHome, versions: VersionStore, base: str,
                 examples: list[TrainingExample], settings: LoraSettings,
                 seed: int = 0) -> Continuation | None:
    """The active version to continue and the corrections new to it; None: from the base."""
    active = versions.active(base)
    version = next((v for v in versions.versions(base) if v.name == active), None)
    if version is None or not same_shape(version, settings):
        return None
    adapter = _adapter_of(home, version)
    if adapter is None:
        return None
    known = set(version.corrections)
    # A correction edited after the version was made is new again: its new answer is
    # trained in all its forms.
    earlier = [ex for ex in examples
               if ex.id in known and ex.updated_at <= version.created_at]
    new = [ex for ex in examples if ex not in earlier]
    rng = random.Random(f"{seed}:{version.name}")
    replayed = earlier if len(earlier) <= REPLAYED else rng.sample(earlier, REPLAYED)
    rest = [ex for ex in earlier if ex not in replayed]
    again = list(replayed)
    rng.shuffle(rest)
    rng.shuffle(again)
    return Continuation(version=version.name, adapter_dir=adapter, new=new,
                        replayed=replayed, checked=(rest + again)[:CHECKED])
