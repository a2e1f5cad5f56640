"""Reading the prompt into the KV cache a chunk at a time, so that Stop is heard.

``Llama.eval`` reads a whole prompt in one call (512-token batches inside it), and the
worker only looks at Stop between tokens of the reply: on a CPU a long conversation's
prompt takes seconds, and Esc seemed to do nothing for 2-6 s. Here the prompt is read in
chunks and ``should_stop`` is asked between them; what was read stays in the cache, so
the next prompt that starts the same way reuses it.

The chunk is small where the model runs on the CPU (measured with the starter model on
one busy core: 512-token prompts took the same time in chunks of 512, 256, 128 and 64,
4.6-4.8 s), and the whole batch where layers are offloaded to a GPU, which reads a
prompt fast but wastes its width on small batches. The size is fixed for a given load,
so the same prompt is always read the same way and a fixed seed gives the same reply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

CPU_CHUNK = 64
"""Prompt tokens per step on a CPU: a Stop waits for at most this many."""


def chunk_size(llm: Any) -> int:
    """Tokens to read per step for this loaded model (see the module's note)."""
    batch = int(getattr(llm, "n_batch", 512) or 512)
    params = getattr(llm, "model_params", None)
    offloaded = params is not None and getattr(params, "n_gpu_layers", 0) != 0
    return batch if offloaded else min(batch, CPU_CHUNK)


def prefill(llm: Any, tokens: Sequence[int], should_stop: Callable[[], bool]) -> bool:
    """Evaluate ``tokens`` after what the cache holds, asking ``should_stop`` between
    chunks; False when it said stop (the cache then holds the chunks already read)."""
    step = chunk_size(llm)
    for start in range(0, len(tokens), step):
        if should_stop():
            return False
        llm.eval(tokens[start:start + step])
    return True
