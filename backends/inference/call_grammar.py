"""A tool call held to the tools' schemas once the model has begun it (issue 26).

With ``tool_choice: "auto"`` the model may answer in words or call a tool, so the reply
cannot be held by a grammar from its first token (:mod:`app.chat.tools`); but once it
has begun a call, even a small model is held to a valid one by the grammar of
``SamplingParams.call_schema`` (a call's schema, or a list's for parallel calls). The
reply is generated freely until its text shows a call's beginning:

- ``<tool_call>`` anywhere (Qwen 2.5/3, Hermes, SmolLM3 and Hearth's fallback prompt);
- ``{"name": "`` as the reply's first words (Llama 3.x's bare JSON call), or
  ``[{"name": "`` (a JSON list of calls). llama.cpp's own chat code triggers on these
  words too: a lone ``{`` or ``[`` would also catch an answer that is JSON or starts
  ``[1]``, and hold it to a call it never meant.

Then a fresh grammar (``<tool_call>`` blocks, a bare call or a list of calls, each
``{"name": …, "arguments": …}``) is fed the text written from the trigger on
(:meth:`~backends.inference.llama_compat.GrammarGuard.replay`; its state depends on the
text alone, so how that text is tokenized does not matter), and generation goes on under
it from the same tokens, which llama-cpp-python finds in the KV cache. Once the grammar
is complete it allows only the end of the turn, so the reply ends with the call. A
beginning that does not fit (a misspelt key, a tool that was not offered) leaves the
reply free, and a later ``<tool_call>`` may try again; such a call comes back as text,
as it did before this module. The sampler chain restarts at the switch: its repeat
penalty counts the call's own tokens from there, and a seeded reply stays the same from
run to run.

llama.cpp has a lazy grammar of its own (``llama_sampler_init_grammar_lazy_patterns``),
but when it triggers it feeds the grammar the text after the trigger itself, and text
that does not fit throws a C++ exception through the C API, which ends the worker.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import llama_cpp

from app.chat.tools import MAX_PARALLEL
from backends.inference import llama_compat as compat

log = logging.getLogger("hearth.worker")

BLOCK = b"<tool_call>"
BARE = re.compile(rb'\s*(?=(?:\[\s*)?\{\s*"name"\s*:\s*")')
"""A reply that begins as a bare call (or a list of them); it ends where the call starts."""
_WS = "[ \\t\\n]{0,8}"


def call_grammar(call_schema: str) -> str:
    """The GBNF of what may follow a trigger: ``<tool_call>`` blocks, a bare call or a
    list of calls, each one call of ``call_schema``; checked against Hearth's bounds.

    ``call_schema`` is one call's, or an array of calls' (parallel calls): then up to its
    ``maxItems`` blocks or list items, at most :data:`~app.chat.tools.MAX_PARALLEL`.
    Only ``root`` is Hearth's: the converter names every rule of the call after its top
    one (``call``, ``call-arguments``, ...) or after a JSON type, never ``root``. The
    optional space first is what a SentencePiece vocabulary puts before tokenized text.
    """
    schema = json.loads(call_schema)
    most = 1
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        limit = schema.get("maxItems", MAX_PARALLEL)
        most = max(1, min(limit, MAX_PARALLEL)) if isinstance(limit, int) else MAX_PARALLEL
        schema = schema["items"]
    call, rules = compat.schema_rules(json.dumps(schema), "call")
    block = f'"<tool_call>" {_WS} {call} {_WS} "</tool_call>"'
    blocks, items = block, call
    if most > 1:
        blocks += f" ({_WS} {block}){{0,{most - 1}}}"
        items += f' ("," {_WS} {call}){{0,{most - 1}}}'
    root = f'root ::= " "? ({blocks} | {call} | "[" {_WS} {items} {_WS} "]")'
    return compat.checked(root + "\n" + rules)


class LazyCall:
    """One reply's lazy call grammar: :meth:`generate` yields its tokens, free until a
    call begins, then held by a :class:`~backends.inference.llama_compat.GrammarGuard`."""

    def __init__(self, llm: llama_cpp.Llama, call_schema: str, written: str = "") -> None:
        """``written``: the reply's text so far when a reply is continued, which may
        already have begun a call. A grammar llama.cpp cannot parse fails here, before
        the reply, like a forced one (the guard is kept for the first trigger)."""
        self.llm = llm
        self.grammar = call_grammar(call_schema)
        self._guard: compat.GrammarGuard | None = compat.GrammarGuard(llm, self.grammar)
        self.text = written.encode("utf-8")
        self._bare = True  # the reply may still begin as a bare call
        self._from = 0  # where to look for the next <tool_call>
        self._start: int | None = None  # where the call found begins, in self.text

    def generate(self, prompt: list[int], **sampling: Any) -> Iterator[int]:
        """The reply's tokens after ``prompt``, as :func:`llama_compat.generate` gives
        them; each is yielded before the trigger is looked for, so a reply that ends
        on it (a stop string, Stop, ``max_tokens``) never builds the grammar."""
        tokens = list(prompt)
        guard = self._switch()
        if guard is None:
            free = compat.generate(self.llm, tokens, None, **sampling)
            for token in free:
                yield token
                tokens.append(token)
                self.text += self.llm.detokenize([token])
                guard = self._switch()
                if guard is not None:
                    free.close()
                    break
            else:
                return
        yield from compat.generate(self.llm, tokens, guard, **sampling)

    def _switch(self) -> compat.GrammarGuard | None:
        """A guard that has accepted the call begun so far, once one has begun and fits."""
        start = self._begun()
        if start is None:
            return None
        try:
            self.text[start:].decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data":
                return None  # a character split between two tokens: after the next one
            self._give_up(start, "it is not UTF-8")
            return None
        guard = self._guard or compat.GrammarGuard(self.llm, self.grammar)
        self._guard = None
        if guard.replay(self.llm.tokenize(self.text[start:], add_bos=False, special=False)):
            return guard
        self._give_up(start, "it does not fit the tools' schemas")
        return None

    def _begun(self) -> int | None:
        """Where in the reply a call begins, once its trigger has been written."""
        if self._start is None and self._bare:
            found = BARE.match(self.text)
            self._start = found.end() if found else None
        if self._start is None:
            at = self.text.find(BLOCK, self._from)
            if at >= 0:
                self._start = at
            else:  # a trigger cut by the end may be completed by the next token
                self._from = max(self._from, len(self.text) - len(BLOCK) + 1)
        return self._start

    def _give_up(self, start: int, why: str) -> None:
        log.info("a tool call begun at byte %d is left to the model: %s", start, why)
        self._start, self._bare, self._from = None, False, start + 1
