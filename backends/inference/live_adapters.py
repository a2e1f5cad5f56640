"""LoRA adapters applied live to the loaded base, without merging or reloading it.

A GGUF adapter is loaded once per base (llama.cpp checks that it fits) and then only
switched on or off, which takes milliseconds; the KV cache is dropped at each switch,
since it was computed with the other weights. llama.cpp frees the adapters with the
base, so a new base starts with none.
"""

from __future__ import annotations

import time
from typing import Any

from backends.inference import llama_compat as compat


class LiveAdapters:
    def __init__(self) -> None:
        self.handles: dict[str, Any] = {}
        self.current = ""
        """The adapter applied now ("" for the base alone); replies record it."""

    def apply(self, llm: Any, path: str | None, scale: float = 1.0) -> float:
        """Apply ``path`` (None: none) and return the seconds it took; raises
        :class:`~backends.inference.llama_compat.AdapterError` for a file that does not
        fit this base, leaving the current adapter as it was."""
        started = time.perf_counter()
        handle = None
        if path:
            handle = self.handles.get(path)
            if handle is None:
                handle = compat.load_adapter(llm, path)
                self.handles[path] = handle
        compat.use_adapter(llm, handle, scale)
        self.current = path or ""
        return round(time.perf_counter() - started, 4)
