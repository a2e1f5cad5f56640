"""A remembered kernel fallback is shown by ``hearth doctor`` and the System check, and
can be forgotten there (review 2026-12-07, S1: nothing called ``KernelMemory.forget``)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app import doctor
from app.cli.main import main
from app.doctor import run_doctor
from app.doctor_records import LlamaCheck, TorchCheck
from app.inference.kernels import OVERRIDE_ENV, KernelMemory
from app.paths import resolve_home
from app.workers.answer import write_answer
from backends.inference.llama_compat import CRASH_TEST_ENV

SELF_TESTS = {
    "llama": LlamaCheck(prompt_tokens=12, generated_tokens=4, tokens_per_s=9.0,
                        system_info="CPU : AVX2 = 1"),
    "torch": TorchCheck(torch="2.x", lora_step_s=0.5, lora_losses=[4.1, 4.0]),
}


@pytest.fixture
def quick_self_tests(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The doctor's child processes answered at once (the report's logic is what is
    tested here; test_doctor.py runs the real ones); returns their arguments."""
    calls: list[list[str]] = []

    def child(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        write_answer(Path(args[-1]), SELF_TESTS[args[0]])  # where the real child answers
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(doctor, "_child", child)
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.delenv(CRASH_TEST_ENV, raising=False)
    return calls


def test_the_report_shows_a_remembered_fallback_and_can_forget_it(
        tmp_path: Path, quick_self_tests: list[list[str]]) -> None:
    home = resolve_home(tmp_path / "home")
    KernelMemory(home.kernels_file).remember_safe(signal.SIGABRT)
    report = run_doctor(home)
    assert report.kernels.remembered is not None
    assert report.kernels.remembered.signal == "SIGABRT"
    assert not report.kernels.extra_bufts
    assert quick_self_tests[0][:1] == ["llama"] and quick_self_tests[0][2] == "0"  # safe
    text = "\n".join(report.lines())
    assert "remembered optimized kernels crashed here (SIGABRT" in text
    assert "hearth doctor --forget-kernels" in text
    forgot = run_doctor(home, forget_kernels=True)
    assert KernelMemory(home.kernels_file).safe_record() is None
    assert forgot.kernels.remembered is None and forgot.kernels.extra_bufts
    assert quick_self_tests[-2][2] == "1"  # the self-test tried the optimized ones again
    assert any("Forgot that the optimized kernels crashed here (SIGABRT" in n
               for n in forgot.notes)


def test_the_system_check_has_a_button_to_forget_it(
        qtbot: QtBot, tmp_path: Path, quick_self_tests: list[list[str]]) -> None:
    from ui.doctor_dialog import DoctorDialog

    home = resolve_home(tmp_path / "home")
    dialog = DoctorDialog(home)
    qtbot.addWidget(dialog)
    assert dialog.forget.isHidden()  # nothing remembered, nothing to forget
    KernelMemory(home.kernels_file).remember_safe(signal.SIGSEGV)
    dialog = DoctorDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.start()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=60_000)
    assert dialog.forget.isVisible() and dialog.forget.isEnabled()
    assert "remembered optimized kernels crashed here (SIGSEGV" in dialog.text.toPlainText()
    dialog.report = None
    dialog.forget.click()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=60_000)
    assert KernelMemory(home.kernels_file).safe_record() is None
    assert "Forgot that the optimized kernels crashed here" in dialog.text.toPlainText()
    assert not dialog.forget.isVisible()
    dialog.close()


@pytest.mark.slow
def test_hearth_doctor_forget_kernels_retests_the_optimized_ones(
        home_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.delenv(CRASH_TEST_ENV, raising=False)
    home = resolve_home(home_dir)
    KernelMemory(home.kernels_file).remember_safe(signal.SIGABRT)
    assert main(["doctor", "--forget-kernels"]) == 0
    out = capsys.readouterr().out
    assert "Forgot that the optimized kernels crashed here (SIGABRT" in out
    record = KernelMemory(home.kernels_file).safe_record()
    # Forgotten, unless this machine's optimized kernels really crash (then relearned).
    assert record is None or "crashed on this machine" in out
    assert ("kernels: optimized" in out) == (record is None)
