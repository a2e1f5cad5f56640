"""What ``hearth doctor`` finds, as records: its self-tests' answers and its report.

Each self-test runs in a child process (``backends.self_test``) and answers through a
file with the records' codec (:mod:`app.workers.answer`), as the export check does: a
child that crashes leaves no answer, and the doctor reads that as the finding it is. The
report built from them is what ``hearth doctor --json`` prints and the System check
shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.workers.answer import Answer


@dataclass
class LlamaCheck(Answer):
    """The starter model loaded as the chat worker loads it, a multi-token prompt decoded
    (where a bad CPU kernel crashes)."""

    system_info: str = ""
    llama_cpp_python: str = ""
    gpu_offload: bool = False
    load_s: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    tokens_per_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class TorchCheck(Answer):
    """What PyTorch sees, and two LoRA steps on a tiny model built in the child."""

    torch: str = ""
    cuda_devices: list[str] = field(default_factory=list)
    cuda_bf16: bool = False
    threads: int = 0
    lora_losses: list[float] = field(default_factory=list)
    lora_step_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class CpuFacts:
    model: str = ""
    physical_cores: int = 1
    logical_cores: int = 1
    features: list[str] = field(default_factory=list)
    amx_advertised: bool = False
    amx_usable: bool = False


@dataclass
class RememberedCrash:
    """Optimized llama.cpp kernels that crashed here, remembered (app.inference.kernels)."""

    signal: str = ""
    when: str = ""
    cpu_model: str = ""


@dataclass
class KernelFacts:
    llama_cpp: str = ""
    extra_bufts: bool = False
    reason: str = ""
    remembered: RememberedCrash | None = None


@dataclass
class MemoryFacts:
    free_ram: int = 0
    free_disk: int = 0
    auto_threads: int = 1
