"""``hearth doctor``: facts about the machine, a real self-test, one exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.cli.main import main
from app.inference.kernels import OVERRIDE_ENV, KernelMemory
from app.paths import resolve_home
from app.workspace import Workspace
from backends.inference.llama_compat import CRASH_TEST_ENV

pytestmark = pytest.mark.slow


def test_doctor_reports_the_machine_and_passes_its_self_test(
        home_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.delenv(CRASH_TEST_ENV, raising=False)
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] and report["problems"] == []
    assert report["cpu"]["physical_cores"] >= 1 and report["cpu"]["model"]
    assert report["llama"]["ok"] and report["llama"]["generated_tokens"] > 0
    assert report["llama"]["prompt_tokens"] > 1  # the multi-token batch that crashes bad kernels
    assert "CPU" in report["llama"]["system_info"] or "AVX" in report["llama"]["system_info"]
    assert report["torch"]["ok"] and report["torch"]["lora_losses"]
    assert report["memory"]["free_disk"] > 0 and report["data_folder"] == str(home_dir.resolve())
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "Healthy." in text and "self-test" in text and "kernels:" in text


def test_doctor_falls_back_from_crashing_kernels_and_remembers(
        home_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.setenv(CRASH_TEST_ENV, "load")
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["llama"]["ok"] and report["kernels"]["extra_bufts"] is False
    assert any("crashed" in note for note in report["notes"])
    assert KernelMemory(resolve_home(home_dir).kernels_file).safe_record() is not None


def test_doctor_names_a_broken_model_as_a_problem(
        home_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.gguf_factory import write_tiny_gguf

    monkeypatch.setenv(OVERRIDE_ENV, "0")
    bad = write_tiny_gguf(tmp_path / "broken.gguf")  # valid GGUF, not a runnable model
    assert main(["models", "import", str(bad), "--name", "broken"]) == 0
    capsys.readouterr()
    assert main(["doctor", "-m", "broken"]) == 1
    out = capsys.readouterr().out
    assert "Problem: llama.cpp failed its self-test" in out and "problem(s) found" in out


def test_system_check_in_the_app_shows_the_report(qtbot: QtBot, workspace: Workspace) -> None:
    from ui.main_window import MainWindow

    window = MainWindow(workspace)
    qtbot.addWidget(window)
    try:
        assert window.menuBar().actions()[-1].text() == "&Help"
        window.system_check_action.trigger()
        dialog = window.doctor_dialog
        assert dialog is not None and dialog.isVisible()
        qtbot.waitUntil(lambda: dialog.report is not None, timeout=180_000)
        text = dialog.text.toPlainText()
        assert "self-test" in text and "Data folder" in text
        assert dialog.status.text() == "Everything works."
    finally:
        window.close()
