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
import json
import math
import os
import weakref
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import LogitsProcessorList
from llama_cpp.llama_grammar import SchemaConverter
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

from app.inference.grammar_limits import StructureError, check_grammar, check_schema

# Tests only: "load" or "chat" makes the worker abort there, the way llama.cpp's AMX
# path crashes on some machines, when the extra buffer types are on (so the fallback
# can be tested on any CPU). Never set outside tests.
CRASH_TEST_ENV = "HEARTH_TEST_CRASH_EXTRA_BUFTS"
# The models opened with the extra buffer types: only they crash on that switch.
_EXTRA_BUFTS: weakref.WeakSet[llama_cpp.Llama] = weakref.WeakSet()

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
    if extra_bufts:
        _EXTRA_BUFTS.add(llm)
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
    if llm in _EXTRA_BUFTS and os.environ.get(CRASH_TEST_ENV) == point:
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


class GrammarDeadEnd(RuntimeError):
    """The grammar allows no token of this model's vocabulary at this point of a reply."""


def make_grammar(llm: llama_cpp.Llama, grammar: str, json_schema: str
                 ) -> GrammarGuard | None:
    """The grammar for a reply (None for free text), checked before llama.cpp sees it.

    Hearth's own bounds come first (:mod:`app.inference.grammar_limits`): llama.cpp's
    parser overflows its stack on deep nesting and the schema converter writes one copy
    per required item, so both only ever see what passed them.
    """
    if json_schema:
        grammar = schema_rules(json_schema)[1]
    if not grammar:
        return None
    return GrammarGuard(llm, checked(grammar))


def schema_rules(json_schema: str, top: str = "") -> tuple[str, str]:
    """llama-cpp-python's GBNF rules for ``json_schema`` (within Hearth's bounds), as
    ``(name of the schema's rule, rules)``: the rule is ``root``, or ``top`` where a
    larger grammar (:mod:`backends.inference.call_grammar`) writes its own root around it.
    """
    try:
        check_schema(json_schema)
    except StructureError as exc:
        raise GrammarError(f"the structured output is refused: {exc}") from None
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False,
                                raw_pattern=False)
    try:
        name = converter.visit(converter.resolve_refs(json.loads(json_schema), "stdin"), top)
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise GrammarError(f"this JSON schema cannot be turned into a grammar: "
                           f"{exc}") from None
    return name, converter.format_grammar()


def checked(grammar: str) -> str:
    """``grammar``, once it is within Hearth's bounds; GrammarError saying why not."""
    try:
        check_grammar(grammar)
    except StructureError as exc:
        raise GrammarError(f"the structured output is refused: {exc}") from None
    return grammar


class GrammarGuard:
    """llama.cpp's grammar sampler, applied and advanced by Hearth, not inside the chain.

    Inside llama-cpp-python's sampler chain, llama.cpp accepts whatever token the chain
    picks; when the grammar allows none (a character no token of this vocabulary can
    spell) it aborts the whole process (``GGML_ABORT`` in ``llama_grammar_accept_impl``).
    As the chain's first step (a logits processor) the same sampler masks the logits, a
    dead end is seen before anything is accepted, and :meth:`follow` turns it into
    :class:`GrammarDeadEnd` for this reply alone.
    """

    def __init__(self, llm: llama_cpp.Llama, grammar: str) -> None:
        sampler = _llama.llama_sampler_init_grammar(vocab(llm), grammar.encode("utf-8"),
                                                    b"root")
        if not sampler:
            raise GrammarError("the grammar does not parse (llama.cpp's log says where); "
                               "it needs a 'root ::= ...' rule in GBNF")
        self._sampler = sampler
        weakref.finalize(self, _llama.llama_sampler_free, sampler)
        self._vocab = vocab(llm)
        n = llm.n_vocab()
        self._data = (_llama.llama_token_data * n)()
        self._view = np.ctypeslib.as_array(self._data)
        self._view["id"] = np.arange(n, dtype=np.int32)
        self._array = _llama.llama_token_data_array(self._data, n, -1, False)
        self.problem: str | None = None  # why the reply must stop, once it must
        self.accepted = 0
        self._masked = False  # the logits of the token about to come were masked

    def __call__(self, _input_ids: Any, scores: Any) -> Any:
        """Mask ``scores`` (the logits in token order) to what the grammar allows.

        Called by llama.cpp through ctypes, which would print and drop an exception; a
        failure is kept in :attr:`problem` instead, and nothing is accepted after it.
        """
        try:
            self._view["logit"] = scores
            self._array.size, self._array.selected, self._array.sorted = len(scores), -1, False
            _llama.llama_sampler_apply(self._sampler, ctypes.byref(self._array))
            masked = self._view["logit"].copy()
        except Exception as exc:  # see the docstring
            self.problem = f"the grammar could not be applied: {exc}"
            return scores
        if not np.isfinite(masked).any():
            self.problem = (f"the structured output's grammar allows nothing this model can "
                            f"write after {self.accepted} tokens; the reply stops here (check "
                            "the grammar for characters the model cannot produce)")
            return scores  # the chain picks any token; follow() never accepts it
        self._masked = True
        return masked

    def follow(self, tokens: Iterator[int]) -> Generator[int, None, None]:
        """``tokens`` as sampled, each accepted by the grammar before the next is drawn."""
        for token in tokens:
            if self.problem is not None or not self._masked:
                raise GrammarDeadEnd(self.problem or "the grammar was not applied")
            self._masked = False
            if not llama_cpp.llama_vocab_is_eog(self._vocab, token):
                _llama.llama_sampler_accept(self._sampler, token)
                self.accepted += 1
            yield token

    def replay(self, tokens: list[int]) -> bool:
        """Accept ``tokens`` written before the grammar held the reply, each only once the
        grammar allows it; False at the first it refuses (this guard is then spent).

        llama.cpp aborts the process when told to accept a token its grammar refuses, so
        each is first masked alone, the way :meth:`__call__` masks the whole vocabulary.
        """
        one = (_llama.llama_token_data * 1)()
        array = _llama.llama_token_data_array(one, 1, -1, False)
        for token in tokens:
            one[0] = _llama.llama_token_data(token, 0.0, 0.0)
            array.size, array.selected, array.sorted = 1, -1, False
            _llama.llama_sampler_apply(self._sampler, ctypes.byref(array))
            if not math.isfinite(one[0].logit):
                return False
            _llama.llama_sampler_accept(self._sampler, token)
            self.accepted += 1
        return True


def generate(llm: llama_cpp.Llama, tokens: list[int], grammar: GrammarGuard | None,
             **sampling: Any) -> Generator[int, Any, None]:
    """``Llama.generate`` with the grammar, if any, applied by :class:`GrammarGuard`."""
    if grammar is None:
        return llm.generate(tokens, **sampling)
    return grammar.follow(llm.generate(tokens, logits_processor=LogitsProcessorList([grammar]),
                                       **sampling))
