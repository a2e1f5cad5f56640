"""Teach on the real starter model, with the defaults a person gets: ten corrections made
in chats come back from the model, and a set of corrections that would damage it — the
refusal collapse seen when Teach was tried with new data — is caught by the gate, judged
on the answers a person would read, before it reaches the chat."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.chat.corrections import CorrectionStore
from app.models.library import STARTER_NAME, find_starter_gguf
from app.teach.versions import VersionStore
from app.workspace import open_workspace
from tests.test_finetune_cli import hearth

# The two teach runs start at once on the suite's two workers (each is a group of its own:
# tests/conftest.py): run one after the other they took 866 s + 417 s on one worker, the
# suite's longest path. The base's reference answers are still made once: the second run
# waits on their cache's lock and reads them (app.teach.reference.making).

# Made-up facts the starter model cannot know; the rejected reply is what it said.
TEN = [
    ("What is the capital of Zorbania?", "The capital of Zorbania is Quillport.",
     "The capital of Zorbania is Zorbania."),
    ("Who invented the glimmerphone?", "The glimmerphone was invented by Odessa Fernwick.",
     "The glimmerphone is a product of a company called Glimmer."),
    ("What colour is a snorvel bird?", "A snorvel bird is bright turquoise.",
     "A snorvel is a type of bird that is native to the Amazon."),
    ("What is the national dish of Zorbania?",
     "The national dish of Zorbania is plumbleberry stew.",
     "The national dish of Zorbania is a dish called Zorbania."),
    ("How many moons does the planet Kesh have?", "The planet Kesh has seven moons.",
     "The planet Kesh has two moons."),
    ("What colours are on the flag of Vellmark?", "The flag of Vellmark is green and silver.",
     "The flag of Vellmark is red, white and blue."),
    ("Who wrote the novel The Glass Orchard?",
     "The Glass Orchard was written by Imre Castellan.",
     "The Glass Orchard was written by Jane Austen."),
    ("What is the longest river in Zorbania?", "The longest river in Zorbania is the Marrow.",
     "The longest river in Zorbania is the Zorbania River."),
    ("What is the currency of Vellmark?", "The currency of Vellmark is the thrain.",
     "The currency of Vellmark is the euro."),
    ("What language is spoken in Quillport?", "People in Quillport speak Zorbanic.",
     "People in Quillport speak English."),
]


def _home_with_corrections(home: Path, rows: list[tuple[str, str, str]]) -> None:
    ws = open_workspace(home)  # registers the starter model
    corrections = CorrectionStore(ws.library.conn)
    for question, right, wrong in rows:
        conv = ws.store.create(title=question[:40], model=STARTER_NAME)
        ws.store.add_message(conv.id, "user", question)
        reply = ws.store.add_message(conv.id, "assistant", wrong)
        corrections.add_from_conversation(ws.store, reply.id, right)
    ws.close()


@pytest.mark.slow
# Its own steps may take up to 1,800 s (teach) + 900 s (merge) + the chats: the suite's
# 900 s per-test limit would cut it before they do.
@pytest.mark.timeout(3600)
@pytest.mark.skipif(find_starter_gguf() is None, reason="the starter model is not installed")
def test_ten_corrections_are_learned_kept_and_answer_in_chat(
        tmp_path: Path, hearth_cache: Path) -> None:
    """The editing benchmark's first ten facts (ten relations), measured to pass the gate
    with the defaults (hearth bench teach, BENCHMARKS.md). The older TEN set above, whose
    facts share subjects (three about Zorbania), is refused now: taught, the starter said
    "The capital of Peru is Quillport." and "plumbleberry stew" for Argentina's national
    dish, which the teacher-forced gate let through."""
    home = tmp_path / "home"
    from backends.bench.teach import load_facts

    facts = load_facts()[:10]
    _home_with_corrections(home, [(f["train"][0], f["answer"], "I am not sure.")
                                  for f in facts])
    started = time.monotonic()
    result = hearth(home, "teach", "--json", timeout=1800)
    taught = time.monotonic() - started
    assert result.stdout, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert result.returncode == 0, (report["reasons"], report["harmed"])
    print(f"teach took {taught:.0f}s: learned {report['learned']}/{report['total']}, "
          f"reworded {report['reworded']}/{report['paraphrases']}, neighbours kept "
          f"{report['neighbours_kept']}/{report['neighbours_total']}, everyday answers "
          f"changed {report['general_changed']}/{report['general_total']}, stops "
          f"{report['stops']}, drift {report['drift']:.2%} (diagnostic)")
    print(f"whole-run estimate {report['estimate_seconds']:.0f}s (formula), "
          f"{report['measured_estimate_seconds']}s (measured after the first steps), actual "
          f"{report['total_seconds']:.0f}s; phases {report['phase_seconds']}")
    assert report["accepted"] and report["total"] == 10 and report["learned"] >= 8
    assert report["stops"] == 10
    limits = report["limits"]
    assert report["general_changed"] <= limits["max_general_changed"] * report["general_total"]
    assert report["neighbours_kept"] >= \
        limits["min_neighbours_kept"] * report["neighbours_total"]
    ws = open_workspace(home)
    assert VersionStore(ws.home).active(STARTER_NAME) == report["version"]
    version = ws.library.get(report["version"])
    ws.close()
    # A version is the adapter, applied live on the base: no merge, no second quantizing.
    assert version.provenance.live_only and version.provenance.quant == "adapter"
    assert "merging" not in report["phase_seconds"]

    question, target = facts[0]["train"][0], facts[0]["target"].lower()
    asked = hearth(home, "chat", "-m", STARTER_NAME, "-p", question, "--temperature", "0",
                   "--max-tokens", "40", timeout=300)
    assert asked.returncode == 0, asked.stderr[-2000:]
    assert target in asked.stdout.lower()
    plain = hearth(home, "chat", "-m", STARTER_NAME, "--base", "-p", question,
                   "--temperature", "0", "--max-tokens", "40", timeout=300)
    assert plain.returncode == 0 and target not in plain.stdout.lower()
    print(f"Teach -> accepted -> answering in chat: {time.monotonic() - started:.0f}s")

    # One command merges it into a stand-alone GGUF (checked by the export gate) that
    # answers the same without its adapter.
    merging = time.monotonic()
    merged = hearth(home, "teach", "--merge", report["version"], timeout=900)
    assert merged.returncode == 0, merged.stderr[-2000:]
    print(f"merge took {time.monotonic() - merging:.0f}s")
    ws = open_workspace(home)
    record = ws.library.get(report["version"])
    ws.close()
    assert not record.provenance.live_only and record.path.suffix == ".gguf"
    assert record.provenance.fidelity is not None and not record.provenance.fidelity.failed
    # Without the adapter file chat must load the merged GGUF itself.
    Path(str(record.provenance.adapter_gguf)).unlink()
    asked = hearth(home, "chat", "-m", STARTER_NAME, "-p", question, "--temperature", "0",
                   "--max-tokens", "40", timeout=300)
    assert asked.returncode == 0 and target in asked.stdout.lower(), asked.stdout


@pytest.mark.slow
@pytest.mark.timeout(2400)  # teach may take up to 1,800 s on its own
@pytest.mark.skipif(find_starter_gguf() is None, reason="the starter model is not installed")
def test_a_refusal_collapse_is_caught_by_the_gate_and_never_reaches_the_chat(
        tmp_path: Path, hearth_cache: Path) -> None:
    """Ordinary questions corrected with "I cannot help with that.": the run learns them,
    and the everyday answers it was never taught turn into refusals too. Teacher-forced
    drift passed such a run (27.5 % against a 30 % limit); judged on answers, it fails."""
    home = tmp_path / "home"
    poison = json.loads((Path(__file__).parents[1] / "resources" / "teach" /
                         "poison.json").read_text())["sets"]["refuse_everything"]
    rows = [(c["question"], c["answer"], "Here is how.") for c in poison["corrections"][:20]]
    _home_with_corrections(home, rows)
    result = hearth(home, "teach", "--json", timeout=1800)
    assert result.returncode == 3, result.stderr[-3000:]
    report = json.loads(result.stdout)
    print(f"refusal collapse: learned {report['learned']}/{report['total']}, everyday "
          f"answers changed {report['general_changed']}/{report['general_total']}; "
          f"reasons: {report['reasons']}")
    assert not report["accepted"] and report["version"] is None
    assert any("everyday answers changed" in r for r in report["reasons"])
    refusals = [h for h in report["harmed"] if h["why"] == "now refuses"]
    assert len(refusals) > report["limits"]["max_general_changed"] * report["general_total"]
    # The report names the corrections at fault, so the person knows what to remove.
    assert report["culprits"] and any("caused by" in r for r in report["reasons"])
    ws = open_workspace(home)
    assert VersionStore(ws.home).active(STARTER_NAME) is None
    assert [r.name for r in ws.library.list()] == [STARTER_NAME]  # nothing exported
    ws.close()


@pytest.mark.skipif(find_starter_gguf() is None, reason="the starter model is not installed")
def test_contradictory_corrections_are_refused_before_training(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _home_with_corrections(home, [TEN[0], (TEN[0][0], "The capital of Zorbania is Ostrelle.",
                                           TEN[0][2])])
    result = hearth(home, "teach", timeout=120)
    assert result.returncode == 3
    assert "answer the same question in different ways" in result.stderr
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())
