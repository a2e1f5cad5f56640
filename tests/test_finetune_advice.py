"""The plan says before Start when a small set of new facts will not be learned.

Measured (BENCHMARKS.md, "Fine-tune recall (issue 23 item 8)"): twelve records of three
made-up facts, the balanced preset (the default) answered 0 of 12 afterwards and the
"Learn facts" preset 12 of 12. The warning must fire for the first and not the second,
and not for a large dataset (where the presets train many more steps).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli.finetune import _new_run
from app.cli.main import build_parser
from app.finetune.advice import fact_advice
from app.finetune.datasets import load_dataset
from app.finetune.settings import preset
from app.machine.profile import Machine
from app.workspace import Workspace
from tests.finetune_fixtures import write_jsonl

FACTS = Path(__file__).parent / "benchmarks" / "small_facts.jsonl"
CPU = Machine(cpu_cores=2, memory_bytes=8 << 30)


def _rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"Question number {i}?"},
                          {"role": "assistant", "content": f"Answer number {i}."}]}
            for i in range(n)]


def test_the_default_preset_on_twelve_fact_records_is_warned_and_offered_the_fix() -> None:
    data = load_dataset(FACTS)
    assert data.stats.records == 12
    advice = fact_advice(data, preset("balanced", 12, CPU))
    assert advice is not None and advice.preset == "facts" and advice.label == "Learn facts"
    assert "With 12 records and these settings each record is seen about 6 times at " \
           "learning rate 0.0002: too few to learn new facts" in advice.message
    assert "answered 0 of 12" in advice.message and "use “Learn facts”" in advice.message
    for name in ("quick", "thorough"):  # fewer passes, or a lower rate: the same
        assert fact_advice(data, preset(name, 12, CPU)) is not None
    assert fact_advice(data, preset("facts", 12, CPU)) is None


def test_a_large_dataset_or_plain_text_is_not_warned(tmp_path: Path) -> None:
    large = load_dataset(write_jsonl(tmp_path / "large.jsonl", _rows(400)))
    assert fact_advice(large, preset("balanced", 400, CPU)) is None
    text = load_dataset(write_jsonl(tmp_path / "text.jsonl",
                                    [{"text": f"Plain line {i}."} for i in range(12)]))
    assert fact_advice(text, preset("balanced", 12, CPU)) is None


@pytest.mark.parametrize(("name", "warned"), [("balanced", True), ("facts", False)])
def test_the_cli_plan_says_it_before_training(workspace: Workspace, starter_gguf: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              name: str, warned: bool) -> None:
    workspace.library.register(starter_gguf, "starter")
    # The command's own parser, so that the arguments are the ones `hearth finetune` reads.
    args = build_parser().parse_args(["finetune", "--data", str(FACTS), "-m", "starter",
                                      "--preset", name, "--quant", "q8_0", "--adapter-only"])
    _new_run(workspace, args)  # writes the run folder; nothing trains
    err = capsys.readouterr().err
    assert ("warning: With 12 records" in err and "(--preset facts)" in err) == warned
