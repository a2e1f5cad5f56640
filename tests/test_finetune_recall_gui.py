"""The Fine-tune tab tells what a run learned (issue 23, item 8), driven through its widgets.

The summary shows how many of the data's own questions the result answers as trained and
how many everyday answers changed; a run that answers none ends in a warning, not a green
"Done". Before Start, a small fact set on a preset that will not learn it is warned, and
one click switches to the preset that does.
"""

from __future__ import annotations

from pathlib import Path

from app.chat.corrections import CorrectionStore
from app.finetune.recall import RecallExample, RecallReport
from app.finetune.runs.records import RunSummary
from app.workspace import Workspace
from tests.finetune_fixtures import write_jsonl
from ui.finetune.finetune_tab import FineTuneTab
from ui.finetune.training_view import TrainingView

FACTS = Path(__file__).parent / "benchmarks" / "small_facts.jsonl"


def _report(answered: int) -> RecallReport:
    examples = [RecallExample(question="What is the capital of Velmora?",
                              trained="The capital of Velmora is Quillport.",
                              answer="<b>Nova Haven</b>" if not answered else "Quillport.",
                              carried=bool(answered), heldout=True)]
    examples += [RecallExample(question=f"Q{i}?", trained="A.", answer="B.",
                               carried=i < answered - 1) for i in range(11)]
    return RecallReport(asked=12, answered=answered, heldout_asked=1,
                        heldout_answered=min(1, answered), general_changed=2,
                        general_total=120, examples=examples)


def test_the_summary_shows_the_recall_line_and_warns_when_nothing_was_learned(qtbot) -> None:
    view = TrainingView()
    qtbot.addWidget(view)
    view.reset("run")
    view.show_summary(RunSummary(run_id="r", recall=_report(0)), None)
    view.show_outcome("finished", "Done: tuned is ready.")
    text = view.summary_view.toPlainText()
    assert "Answers as trained\n0 of 1 held-out questions, 0 of 11 training questions" \
        in text
    assert "Everyday answers\nchanged 2 of 120" in text
    assert "It answers none of the 12 questions of its own data as trained" in text
    assert "“Learn facts” preset" in text
    assert "<b>Nova Haven</b>" in text  # the model's words, shown as written
    assert "answers none of its own questions" in view.status_label.text()

    view.reset("run")
    view.show_summary(RunSummary(run_id="r", recall=_report(12)), None)
    view.show_outcome("finished", "Done: tuned is ready.")
    text = view.summary_view.toPlainText()
    assert "1 of 1 held-out questions, 11 of 11 training questions" in text
    assert "Warning" not in text and view.status_label.text() == "Done: tuned is ready."


def test_the_plan_warns_a_small_fact_set_and_switches_preset_in_one_click(
        qtbot, tiny_ws: Workspace, tmp_path: Path) -> None:
    tab = FineTuneTab(tiny_ws, CorrectionStore(tiny_ws.library.conn),
                      memory_available=lambda: 1 << 40)
    qtbot.addWidget(tab)
    tab.resize(1100, 720)
    with qtbot.waitSignal(tab.dataset_checked, timeout=20_000):
        tab.setup.load_file(FACTS)
    setup = tab.setup
    assert setup.selected_preset() == "balanced"  # the default, as a person meets it
    assert setup.advice.isVisibleTo(tab)
    assert "With 12 records and these settings each record is seen about 6 times" in \
        setup.advice.label.text()
    assert setup.advice.switch_button.text() == "Use “Learn facts”"
    setup.advice.switch_button.click()
    assert setup.selected_preset() == "facts"
    assert not setup.advice.isVisibleTo(tab)
    assert "learning rate 0.001" in setup.estimate_label.text()
    assert setup.preset_buttons["facts"].text().startswith("Learn facts: about")
    big = write_jsonl(tmp_path / "big.jsonl", [
        {"messages": [{"role": "user", "content": f"Question {i}?"},
                      {"role": "assistant", "content": f"Answer {i}."}]} for i in range(300)])
    setup.select_preset("balanced")
    with qtbot.waitSignal(tab.dataset_checked, timeout=20_000):
        setup.load_file(big)
    assert not setup.advice.isVisibleTo(tab)
    tab.shutdown()
