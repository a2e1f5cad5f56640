"""The Compare view streams both models at once; the loss chart draws what arrives."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QImage

from app.settings import LoadSettings
from ui.finetune.compare_view import CompareView
from ui.finetune.loss_chart import TRAIN_COLOUR, VALIDATION_COLOUR, LossChart


@pytest.mark.slow
def test_compare_streams_both_sides(qtbot, starter_gguf: Path, tmp_path: Path) -> None:
    view = CompareView(("Base", starter_gguf), ("Tuned", starter_gguf),
                       LoadSettings(n_ctx=512, n_threads=1), log_dir=tmp_path)
    qtbot.addWidget(view)
    try:
        with qtbot.waitSignal(view.finished, timeout=180_000):
            view.compare(["What is 2+2?", "Name a fruit."])
        # Same weights and greedy sampling: both columns must agree, token for token.
        for prompt in range(2):
            assert view.text(0, prompt).strip()
            assert view.text(0, prompt) == view.text(1, prompt)
            assert "tok/s" in view.sides[1].stats[prompt].text()
        assert view.run_button.isEnabled()
    finally:
        view.shutdown()
    assert not any(side.bridge.client.alive for side in view.sides)


def test_compare_reports_a_model_that_will_not_load(qtbot, starter_gguf: Path,
                                                    tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00")
    view = CompareView(("Base", broken), ("Tuned", broken), LoadSettings(n_ctx=512))
    qtbot.addWidget(view)
    try:
        with qtbot.waitSignal(view.finished, timeout=60_000):
            view.compare(["Hi"])
        assert "truncated" in view.sides[0].stats[0].text()
    finally:
        view.shutdown()


def test_loss_chart_draws_points(qtbot) -> None:
    chart = LossChart()
    qtbot.addWidget(chart)
    chart.resize(400, 220)
    chart.clear(total_steps=10)
    blank = chart.grab().toImage()
    for step, loss in enumerate([2.5, 2.0, 1.6, 1.2], start=1):
        chart.add_train(step, loss)
    chart.add_validation(4, 1.4)
    chart.add_train(5, float("nan"))  # ignored, never drawn
    drawn = chart.grab().toImage()
    assert len(chart.train) == 4 and len(chart.validation) == 1
    # The plot spans x 48..388 for steps 0..10: the training curve lies over steps 1-4,
    # the validation dot at step 4; the empty chart has neither colour anywhere.
    step_x = [48 + 340 * step / 10 for step in range(11)]
    assert not _columns(blank, TRAIN_COLOUR) and not _columns(blank, VALIDATION_COLOUR)
    curve = {x for x in _columns(drawn, TRAIN_COLOUR) if x < step_x[5]}  # not the legend's
    assert curve and abs(min(curve) - step_x[1]) <= 3 and abs(max(curve) - step_x[4]) <= 3
    assert any(abs(x - step_x[4]) <= 4 for x in _columns(drawn, VALIDATION_COLOUR))


def _columns(image: QImage, colour: QColor) -> set[int]:
    """The x of every column holding a pixel of (about) this colour."""
    def near(c: QColor) -> bool:
        return max(abs(c.red() - colour.red()), abs(c.green() - colour.green()),
                   abs(c.blue() - colour.blue())) <= 24

    return {x for x in range(image.width()) for y in range(image.height())
            if near(image.pixelColor(x, y))}
