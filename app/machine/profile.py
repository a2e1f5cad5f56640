"""This computer as the presets and the estimates see it: one probe, one record.

The fine-tune presets (how big a batch, how long a sequence), the time and memory
estimates and the worker's thread count all start from the same few facts, read here
once from :mod:`app.machine.cpu` and :mod:`app.machine.memory`; a test builds a
:class:`Machine` by hand to price a run on a computer it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.machine.cpu import cpu_info
from app.machine.memory import has_nvidia_driver, total_memory_bytes


@dataclass(frozen=True)
class Machine:
    """What the presets and the estimate know about this computer."""

    cpu_cores: int
    memory_bytes: int
    has_gpu: bool = False
    bf16_matrix_units: bool = False
    """The CPU advertises AMX bf16 tiles: the training worker's probe will most likely
    measure bf16 faster and train in it. Only the estimate before Start leans on this
    guess; the dtype itself is always chosen by measurement."""

    @classmethod
    def detect(cls) -> Machine:
        """This computer, as :mod:`app.machine` describes it (the one probe of it)."""
        cpu = cpu_info()
        return cls(cpu_cores=cpu.physical_cores, memory_bytes=total_memory_bytes(),
                   has_gpu=has_nvidia_driver(), bf16_matrix_units="amx_bf16" in cpu.flags)

    @property
    def likely_dtype(self) -> str:
        return "bfloat16" if self.bf16_matrix_units and not self.has_gpu else "float32"
