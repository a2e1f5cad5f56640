"""Every use of llama-cpp-python beyond its documented ``Llama`` API, in one place.

Hearth needs a few things the high-level API does not offer: llama.cpp's load progress
callback, turning its extra buffer types off (see :mod:`app.inference.kernels`), the vocabulary
handle, the tokens already in the KV cache, changing the thread count of a loaded
model. They reach into private attributes (``_model``, ``_input_ids``, ``n_tokens``) or
patch ``llama_model_default_params``, which may change between releases; pyproject pins
the tested range (``>=0.3.36,<0.4``) and ``tests/test_llama_compat.py`` touches each
function here, so an upgrade that breaks one fails there first.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

# Tests only: "load" or "chat" makes the worker abort there, the way llama.cpp's AMX
# path crashes on some machines, when the extra buffer types are on (so the fallback
# can be tested on any CPU). Never set outside tests.
CRASH_TEST_ENV = "HEARTH_TEST_CRASH_EXTRA_BUFTS"

_llama = llama_cpp.llama_cpp  # the low-level module


def open_model(path: str, *, n_ctx: int, n_threads: int, n_gpu_layers: int = 0,
               flash_attn: bool = False, extra_bufts: bool = True, cache_type: str = "f16",
               prompt_lookup: int = 0,
               on_progress: Callable[[float], None] | None = None,
               verbose: bool = False, **kwargs: Any) -> llama_cpp.Llama:
    """``llama_cpp.Llama`` with llama.cpp's progress callback and extra-buffer choice.

    ``Llama()`` builds its model params with the low-level module's
    ``llama_model_default_params``; a wrapper sets the two fields it does not expose.
    A quantized KV cache (``cache_type`` "q8_0") needs flash attention in llama.cpp,
    so it turns that on.
    """
    ggml_type = {"f16": _llama.GGML_TYPE_F16, "q8_0": _llama.GGML_TYPE_Q8_0}.get(cache_type)
    if ggml_type is None:
        raise ValueError(f"unknown KV cache type {cache_type!r} (f16 or q8_0)")
    flash_attn = flash_attn or cache_type != "f16"
    if prompt_lookup > 0:  # llama-cpp-python's generate() drafts and verifies with it
        kwargs["draft_model"] = LlamaPromptLookupDecoding(num_pred_tokens=prompt_lookup)
    callback = None
    if on_progress is not None:
        def progress(fraction: float, _user: ctypes.c_void_p) -> bool:
            on_progress(float(fraction))
            return True

        callback = llama_cpp.llama_progress_callback(progress)
    default_params = _llama.llama_model_default_params

    def params() -> Any:
        p = default_params()
        p.use_extra_bufts = extra_bufts
        if callback is not None:
            p.progress_callback = callback
        return p

    _llama.llama_model_default_params = params
    try:
        llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers,
                              n_threads=n_threads, n_threads_batch=n_threads,
                              flash_attn=flash_attn, verbose=verbose, type_k=ggml_type,
                              type_v=ggml_type, **kwargs)
    finally:
        _llama.llama_model_default_params = default_params
    llm._hearth_extra_bufts = extra_bufts  # read by warm_up()
    return llm


def warm_up(llm: llama_cpp.Llama) -> None:
    """Decode a batch of several tokens and forget it.

    A kernel that cannot run on this CPU crashes on the first multi-token batch; doing
    that now moves the crash into loading, where the client can fall back.
    """
    crash_if_asked(llm, "load")
    v = vocab(llm)
    bos = llama_cpp.llama_vocab_bos(v)
    first = bos if bos >= 0 else 0
    llm.reset()
    llm.eval([first] + [min(i + 1, llm.n_vocab() - 1) for i in range(7)])
    llm.reset()


def crash_if_asked(llm: llama_cpp.Llama, point: str) -> None:
    """The test switch of :data:`CRASH_TEST_ENV`."""
    if getattr(llm, "_hearth_extra_bufts", False) and os.environ.get(CRASH_TEST_ENV) == point:
        os.abort()


def vocab(llm: llama_cpp.Llama) -> Any:
    return llm._model.vocab


def n_ctx_train(llm: llama_cpp.Llama) -> int:
    return int(llm._model.n_ctx_train())


def cached_tokens(llm: llama_cpp.Llama) -> list[int]:
    """The tokens whose keys and values are in the KV cache, in order."""
    return llm._input_ids[:llm.n_tokens].tolist()


def n_cached(llm: llama_cpp.Llama) -> int:
    return int(llm.n_tokens)


def rewind(llm: llama_cpp.Llama, n_tokens: int) -> None:
    """Keep the first ``n_tokens`` of the KV cache; the next eval overwrites the rest."""
    llm.n_tokens = n_tokens


def set_threads(llm: llama_cpp.Llama, n_threads: int) -> None:
    """Change the threads of a loaded model (decode and batch) without reloading."""
    if llm.context_params.n_threads != n_threads:
        _llama.llama_set_n_threads(llm.ctx, n_threads, n_threads)
        llm.context_params.n_threads = n_threads
        llm.context_params.n_threads_batch = n_threads
        llm.n_threads = n_threads
        llm.n_threads_batch = n_threads


def flash_attn(llm: llama_cpp.Llama) -> bool:
    return int(llm.context_params.flash_attn_type) == int(_llama.LLAMA_FLASH_ATTN_TYPE_ENABLED)


def n_threads(llm: llama_cpp.Llama) -> int:
    return int(llm.context_params.n_threads)


def system_info() -> str:
    """llama.cpp's own line of CPU features and backends (what the build will use)."""
    raw = llama_cpp.llama_print_system_info()
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def supports_gpu_offload() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


def version() -> str:
    return str(llama_cpp.__version__)


class AdapterError(ValueError):
    """llama.cpp refused a LoRA adapter file (wrong base, wrong format)."""


def load_adapter(llm: llama_cpp.Llama, path: str) -> Any:
    """Load a GGUF LoRA adapter for ``llm``'s model; freed when ``llm`` is closed.

    llama.cpp checks that the adapter's architecture matches the model's and that every
    tensor fits; it returns NULL (and logs why) when it does not.
    """
    handle = _llama.llama_adapter_lora_init(llm._model.model, path.encode("utf-8"))
    if not handle:
        raise AdapterError(f"llama.cpp cannot apply {Path(path).name} to this model (it "
                           "was made for another base model, or the file is damaged)")
    llm._stack.callback(_llama.llama_adapter_lora_free, handle)
    return handle


def use_adapter(llm: llama_cpp.Llama, handle: Any | None, scale: float = 1.0) -> None:
    """Apply ``handle`` (or none) to the next evaluations, and forget the KV cache.

    The cached keys and values were computed with the previous weights, so a prefix
    match against them would mix two models in one reply.
    """
    if handle is None:
        rc = _llama.llama_set_adapters_lora(llm.ctx, None, 0, None)
    else:
        adapters = (_llama.llama_adapter_lora_p_ctypes * 1)(handle)
        scales = (ctypes.c_float * 1)(scale)
        rc = _llama.llama_set_adapters_lora(llm.ctx, adapters, 1, scales)
    if rc:
        raise AdapterError(f"llama.cpp could not switch the adapter (code {rc})")
    llm.reset()


class GrammarError(ValueError):
    """A GBNF grammar or JSON schema llama.cpp cannot use."""


def make_grammar(llm: llama_cpp.Llama, grammar: str, json_schema: str
                 ) -> LlamaGrammar | None:
    """llama.cpp's grammar for a reply (None for free text), checked before use.

    ``Llama.generate`` builds the sampler lazily and llama.cpp then dereferences a NULL
    sampler when the grammar does not parse (a segfault), so the grammar is parsed here
    once with llama.cpp's own parser and refused with its reason.
    """
    if json_schema:
        try:
            grammar = json_schema_to_gbnf(json_schema)
        except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise GrammarError(f"this JSON schema cannot be turned into a grammar: {exc}"
                               ) from None
    if not grammar:
        return None
    sampler = _llama.llama_sampler_init_grammar(vocab(llm), grammar.encode("utf-8"), b"root")
    if not sampler:
        raise GrammarError("the grammar does not parse (llama.cpp's log says where); it "
                           "needs a 'root ::= ...' rule in GBNF")
    _llama.llama_sampler_free(sampler)
    return LlamaGrammar.from_string(grammar, verbose=False)
