"""Each use of llama-cpp-python's internals (backends/inference/llama_compat.py), touched once.

An upgrade of llama-cpp-python that renames ``_model``, ``_input_ids`` or the default
params hook fails here, by name, before it breaks chat. The model loads with the safe
kernels: this test runs in pytest's own process, where a crash of the optimized ones
(see test_kernels.py) would take the whole suite down.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from backends.inference import llama_compat as compat

pytestmark = pytest.mark.slow


def test_every_internal_still_works(starter_gguf: Path) -> None:
    import llama_cpp

    progress: list[float] = []
    llm = compat.open_model(str(starter_gguf), n_ctx=512, n_threads=1, extra_bufts=False,
                            on_progress=progress.append, n_batch=64)
    try:
        assert progress and progress[-1] == pytest.approx(1.0)
        assert compat.n_ctx_train(llm) >= 2048
        vocab = compat.vocab(llm)  # the handle llama.cpp's vocabulary calls take
        assert llama_cpp.llama_vocab_n_tokens(vocab) == llm.n_vocab() == 49152
        assert llama_cpp.llama_vocab_eos(vocab) == llm.token_eos()
        compat.warm_up(llm)
        assert compat.n_cached(llm) == 0 and compat.cached_tokens(llm) == []
        tokens = llm.tokenize(b"One two three four five", add_bos=False)
        llm.eval(tokens)
        assert compat.cached_tokens(llm) == tokens and compat.n_cached(llm) == len(tokens)
        compat.rewind(llm, 2)
        assert compat.cached_tokens(llm) == tokens[:2]
        assert compat.n_threads(llm) == 1
        compat.set_threads(llm, 2)
        assert compat.n_threads(llm) == 2
        llm.eval(tokens[2:])  # decodes with the new thread count
        assert compat.cached_tokens(llm) == tokens
    finally:
        llm.close()
    # "CPU : SSE3 = 1 | AVX = 1 | ... |": one "<backend> :" per backend llama.cpp built.
    backends = set(re.findall(r"(\w+) : ", compat.system_info()))
    assert "CPU" in backends
    assert compat.supports_gpu_offload() == bool(backends - {"CPU", "BLAS"})
    assert compat.version() == metadata.version("llama-cpp-python")
    lo, hi = (0, 3, 36), (0, 4, 0)
    assert lo <= tuple(int(x) for x in compat.version().split(".")[:3]) < hi


def test_the_default_params_hook_is_restored(starter_gguf: Path) -> None:
    import llama_cpp

    before = llama_cpp.llama_cpp.llama_model_default_params
    llm = compat.open_model(str(starter_gguf), n_ctx=256, n_threads=1, extra_bufts=False)
    llm.close()
    assert llama_cpp.llama_cpp.llama_model_default_params is before
    assert before().use_extra_bufts  # llama.cpp's own default is untouched
