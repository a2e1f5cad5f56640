"""What this computer's CPU really offers, probed rather than assumed.

Machines of one kind differ: one CPU advertises AMX and AVX512-BF16, another has
neither; a hypervisor may advertise an extension that the kernel does not let a process
use. Kernel and dtype choices start from this probe, and the parts that can still fail
(llama.cpp's AMX path, bf16 speed) are then decided by measurement elsewhere
(:mod:`app.inference.kernels`, the training worker's dtype probe).

No third-party imports beyond psutil: the GUI, the CLI and every worker read it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
from dataclasses import dataclass, field

import psutil

# Linux x86-64: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) asks the kernel for
# the AMX tile state; without that grant the first tile instruction raises SIGILL.
_SYS_ARCH_PRCTL = 158
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18

# The flags worth showing a person, in the order they matter for llama.cpp and torch.
NOTABLE_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16",
                 "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as /proc/cpuinfo (or the platform module) describes it."""

    model: str
    flags: frozenset[str] = field(default_factory=frozenset)
    physical_cores: int = 1
    logical_cores: int = 1

    @property
    def amx_advertised(self) -> bool:
        return "amx_tile" in self.flags

    @property
    def notable_flags(self) -> list[str]:
        return [f for f in NOTABLE_FLAGS if f in self.flags]

    def fingerprint(self) -> str:
        """Identifies 'this kind of machine' for remembered kernel choices: the same CPU
        model with the same flags behaves the same, whichever VM it is."""
        text = self.model + "|" + ",".join(sorted(self.flags))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def cpu_info() -> CpuInfo:
    model, flags = platform.processor() or platform.machine(), frozenset[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(),
                                                     platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                if line.strip() == "" and flags:
                    break  # the first processor's block is enough
    except OSError:
        pass
    # A process held to fewer CPUs (taskset, a container's cpuset, a parallel test run)
    # gets no more threads than it may use: more only wait on each other.
    logical = min(os.cpu_count() or 1, _allowed_cpus())
    physical = min(psutil.cpu_count(logical=False) or logical, logical)
    return CpuInfo(model=model or "unknown CPU", flags=flags, physical_cores=int(physical),
                   logical_cores=int(logical))


def _allowed_cpus() -> int:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@functools.cache
def amx_usable() -> bool:
    """True when the CPU advertises AMX and the kernel grants this process its tile
    state. A CPU that advertises AMX under a kernel that refuses it would die with
    SIGILL on the first tile instruction."""
    info = cpu_info()
    if not info.amx_advertised or platform.system() != "Linux" or \
            platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False
