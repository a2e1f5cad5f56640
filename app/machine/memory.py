"""How much memory this computer has, and how much is free: one definition for Hearth.

"Free" is psutil's ``available``: free pages plus the cache the kernel gives back on
demand (memory-mapped model weights included). That is what a new allocation can
have without swapping, and it is what every check uses: the memory fit of a model, the
fine-tune estimate's "only X free now", the doctor's report. The fit check adds to it
what the running inference worker would release (:func:`app.models.memory_fit.system_memory`).
"""

from __future__ import annotations

import shutil

import psutil


def free_memory_bytes() -> int:
    """RAM a new allocation can have now without swapping (free plus reclaimable cache)."""
    return int(psutil.virtual_memory().available)


def total_memory_bytes() -> int:
    """All the RAM the system has."""
    return int(psutil.virtual_memory().total)


def has_nvidia_driver() -> bool:
    """An NVIDIA driver is installed (``nvidia-smi`` is on PATH): the GPU hint the app has,
    since the GUI never imports torch; the workers report the device they really use."""
    return shutil.which("nvidia-smi") is not None
