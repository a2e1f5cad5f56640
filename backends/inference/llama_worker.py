"""The llama.cpp inference worker: a child process that owns the model.

llama.cpp may abort the whole process on a bad input (GGML_ASSERT), and only frees GPU
memory at process exit, so it never runs inside the GUI. The app starts this module as
``python -m backends.inference.llama_worker ADDRESS`` under its supervisor
(:mod:`app.workers.supervisor`), with an auth key in the environment; it connects back
(:mod:`backends.inference.worker_channel`, which also forwards its warnings as ``Log``
events and routes llama.cpp's own log into Python logging) and speaks
:mod:`app.inference.protocol`.

Threads: the main thread loads and generates; a reader thread receives commands so that
``Cancel`` is seen between two tokens of a reply in flight.

What a reply sends back as it is decoded (text held back at a possible stop string,
batched ``Tokens`` events, the reply's stats) is :mod:`backends.inference.reply_stream`.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from typing import Any

import llama_cpp

from app.chat.template import ChatTemplate, ChatTemplateError, TemplateCancelled, render_parts
from app.chat.template_choice import choose_template, end_of_turn
from app.chat.tool_prompt import shape
from app.inference import protocol as p
from app.machine.threads import default_threads
from app.models.gguf_file import GGUFError, read_gguf
from backends.inference import llama_compat as compat
from backends.inference.call_grammar import LazyCall
from backends.inference.failures import request_id_of, unexpected
from backends.inference.live_adapters import LiveAdapters
from backends.inference.prefill import prefill
from backends.inference.prompt_fit import ConversationFit
from backends.inference.reply_stream import ReplyStream
from backends.inference.token_text import ControlTokens, common_prefix
from backends.inference.worker_channel import Channel, LlamaLog, connect

log = logging.getLogger("hearth.worker")


class Worker:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.llm: llama_cpp.Llama | None = None
        self.template: ChatTemplate | None = None
        self.template_stops: list[str] = []
        self.adapters = LiveAdapters()
        self.commands: queue.Queue[Any] = queue.Queue()
        # Ids of replies asked to stop; a Cancel may arrive before its Chat is started.
        self.cancelled: set[str] = set()
        self.closing = False
        # The loaded model's control tokens by text, for tokenize (built on first use).
        self._controls: ControlTokens | None = None

    # ----------------------------------------------------------------- plumbing

    def reader(self) -> None:
        conn = self.channel.conn
        while True:
            try:
                data = conn.recv_bytes()
                message = p.decode(data)
            except (EOFError, OSError):
                # The app is gone: stop any reply in flight, then exit.
                self.closing = True
                self.commands.put(p.Shutdown())
                return
            except p.ProtocolError as exc:
                self.channel.send(p.Error("bad_request", str(exc), request_id_of(data)))
                continue
            if isinstance(message, p.Cancel):
                self.cancelled.add(message.request_id)
            else:
                self.commands.put(message)

    def run(self) -> None:
        threading.Thread(target=self.reader, name="commands", daemon=True).start()
        while True:
            command = self.commands.get()
            if isinstance(command, p.Shutdown):
                break
            try:
                self.dispatch(command)
            except OSError:
                if self.closing:  # the app is gone: nobody to tell, nothing to finish
                    break
                raise
            except MemoryError:
                self.channel.send(p.Error("out_of_memory", "the worker ran out of memory; "
                                          "try a smaller model or a shorter context",
                                          getattr(command, "request_id", None)))
            except Exception as exc:  # one request must never end the worker
                self.channel.send(unexpected(command, exc, self.llm))
        if self.llm is not None:
            self.llm.close()

    def dispatch(self, command: Any) -> None:
        if isinstance(command, p.Load):
            self.load(command)
        elif isinstance(command, p.Chat):
            self.chat(command)
        elif isinstance(command, p.SetAdapter):
            self.set_adapter(command)
        elif isinstance(command, p.Unload):
            self.unload()
            self.channel.send(p.Unloaded())

    # -------------------------------------------------------------------- load

    def load(self, cmd: p.Load) -> None:
        self.unload()
        try:
            info = read_gguf(cmd.path)
        except GGUFError as exc:
            self.channel.send(p.Error("load_failed", str(exc)))
            return
        started = time.perf_counter()
        n_threads = cmd.n_threads or default_threads()
        last_sent = [0.0]

        def on_progress(fraction: float) -> None:
            if fraction - last_sent[0] >= 0.05 or fraction >= 1.0:
                last_sent[0] = fraction
                self.channel.send(p.LoadProgress(round(fraction, 3)))

        try:
            self.llm = compat.open_model(
                cmd.path, n_ctx=cmd.n_ctx, n_gpu_layers=cmd.n_gpu_layers,
                n_threads=n_threads, flash_attn=cmd.flash_attn,
                extra_bufts=cmd.extra_bufts, on_progress=on_progress, n_batch=512,
                verbose=True, cache_type=cmd.cache_type, prompt_lookup=cmd.prompt_lookup)
        except (ValueError, RuntimeError, OSError) as exc:
            self.channel.send(p.Error("load_failed", f"llama.cpp could not load "
                                      f"{os.path.basename(cmd.path)}: {exc}"))
            return
        log.info("loaded with %s kernels", "optimized" if cmd.extra_bufts else "safe")
        compat.warm_up(self.llm)
        vocab = compat.vocab(self.llm)
        self.template = choose_template(
            info.chat_template, info.architecture, self._has_token, cmd.template,
            bos_token=self._piece(llama_cpp.llama_vocab_bos(vocab)),
            eos_token=self._piece(llama_cpp.llama_vocab_eos(vocab)))
        marker = end_of_turn(self.template)
        self.template_stops = [marker] if marker else []
        self.channel.send(p.Loaded(
            path=cmd.path, n_ctx=self.llm.n_ctx(), n_ctx_train=compat.n_ctx_train(self.llm),
            n_gpu_layers=cmd.n_gpu_layers, n_threads=n_threads,
            template_source=self.template.source, template_sha256=self.template.sha256,
            load_seconds=round(time.perf_counter() - started, 3),
            extra_bufts=cmd.extra_bufts, cache_type=cmd.cache_type,
            flash_attn=compat.flash_attn(self.llm), prompt_lookup=cmd.prompt_lookup))

    def _stops(self, asked: list[str]) -> list[str]:
        """The reply's stop strings, and the end of turn of a family template."""
        return [*asked, *(t for t in self.template_stops if t not in asked)]

    def _has_token(self, text: str) -> bool:
        """Whether ``text`` is one special token of the loaded vocabulary."""
        assert self.llm is not None
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return len(ids) == 1 and self._piece(ids[0]) == text

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        assert self.llm is not None
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def unload(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None
            self.template = None
        self.adapters = LiveAdapters()

    def set_adapter(self, cmd: p.SetAdapter) -> None:
        """Switch the adapter on the loaded base: load it once, then only apply it."""
        if self.llm is None:
            self.channel.send(p.Error("no_model", "no model is loaded"))
            return
        try:
            seconds = self.adapters.apply(self.llm, cmd.path, cmd.scale)
        except compat.AdapterError as exc:
            self.channel.send(p.Error("adapter_failed", str(exc)))
            return
        self.channel.send(p.AdapterSet(cmd.path, seconds))

    # -------------------------------------------------------------------- chat

    def chat(self, cmd: p.Chat) -> None:
        try:
            self._chat(cmd)
        finally:
            self.cancelled.discard(cmd.request_id)

    def _chat(self, cmd: p.Chat) -> None:
        if self.llm is None or self.template is None:
            self.channel.send(p.Error("no_model", "no model is loaded", cmd.request_id))
            return
        started = time.perf_counter()
        compat.crash_if_asked(self.llm, "chat")
        try:
            tokens, dropped = self.fit_prompt(cmd)
            grammar = self._grammar(cmd)
        except TemplateCancelled:
            # Stop (or the app's end) arrived while the template was rendering.
            self.channel.send(p.Done(cmd.request_id, "", p.ReplyStats(
                prompt_tokens=0, cached_tokens=0, completion_tokens=0, ttft_s=0.0,
                prefill_tps=0.0, decode_tps=0.0,
                total_s=round(time.perf_counter() - started, 4), finish_reason="cancelled",
                template_source=self.template.source)))
            return
        except (ChatTemplateError, ValueError) as exc:
            self.channel.send(p.Error("bad_request", str(exc), cmd.request_id))
            return
        if dropped:
            self.channel.send(p.ContextTrimmed(cmd.request_id, dropped, len(tokens),
                                               self.llm.n_ctx()))
        try:
            self.generate(cmd, tokens, dropped, started, grammar)
        except RuntimeError as exc:
            self.channel.send(p.Error("generation_failed", f"llama.cpp failed: {exc}",
                                      cmd.request_id))
            self.llm.reset()

    def _grammar(self, cmd: p.Chat) -> compat.GrammarGuard | LazyCall | None:
        """What holds the reply: the grammar asked for, from its first token; else, with
        a call schema, a call once the model begins one (continuing a reply, perhaps
        in what it has written already)."""
        s = cmd.sampling
        assert self.llm is not None
        if s.grammar or s.json_schema or not s.call_schema:
            return compat.make_grammar(self.llm, s.grammar, s.json_schema)
        last = cmd.messages[-1] if cmd.continue_last and cmd.messages else {}
        written = last.get("content", "") if last.get("role") == "assistant" else ""
        return LazyCall(self.llm, s.call_schema, written)

    def render(self, messages: list[dict[str, Any]], continue_last: bool,
               request_id: str = "", tools: list[dict[str, Any]] | None = None
               ) -> list[tuple[str, bool]]:
        """The prompt as ``(text, is_content)`` parts (see render_parts).

        The template is a stranger's program: it renders under the default limits, and
        a Cancel of this reply or the app's end stops it at once.
        """
        assert self.template is not None

        def should_stop() -> bool:
            return self.closing or request_id in self.cancelled

        guard = self._control_tokens().could_form
        if continue_last and messages and messages[-1]["role"] == "assistant":
            head = render_parts(self.template, messages[:-1], add_generation_prompt=True,
                                should_stop=should_stop, guard=guard, tools=tools)
            return [*head, (messages[-1]["content"], True)]
        return render_parts(self.template, messages, add_generation_prompt=True,
                            should_stop=should_stop, guard=guard, tools=tools)

    def tokenize(self, parts: list[tuple[str, bool]]) -> list[int]:
        """Token ids of the prompt, where only the template's text may hold control
        tokens: a ``<|im_end|>`` typed into a message stays five plain tokens.

        Cut at the control tokens' texts in the template's parts, the prompt becomes
        runs of plain text (template and content together, so tokens across their
        seams merge as before) and control tokens; llama.cpp tokenizes the runs with
        ``special=False``. This is what its own ``special=True`` does, minus the
        content.
        """
        assert self.llm is not None and self.template is not None
        controls = self._control_tokens()
        pattern, ids = controls.pattern, controls.ids
        pieces: list[str | int] = []
        plain = ""
        for text, is_content in parts:
            if is_content or pattern is None:
                plain += text
                continue
            at = 0
            for found in pattern.finditer(text):
                plain += text[at:found.start()]
                if plain:
                    pieces.append(plain)
                plain = ""
                pieces.append(ids[found.group(0)])
                at = found.end()
            plain += text[at:]
        if plain:
            pieces.append(plain)
        vocab = compat.vocab(self.llm)
        bos = llama_cpp.llama_vocab_bos(vocab)
        starts_with_bos = bool(pieces) and pieces[0] == bos
        tokens = [bos] if (llama_cpp.llama_vocab_get_add_bos(vocab) and bos >= 0
                           and not starts_with_bos) else []
        for piece in pieces:
            if isinstance(piece, int):
                tokens.append(piece)
            else:
                tokens.extend(self.llm.tokenize(piece.encode("utf-8"), add_bos=False,
                                                special=False))
        return tokens

    def _control_tokens(self) -> ControlTokens:
        """The model's control tokens (what ``special=True`` parses) by their text."""
        assert self.llm is not None
        if self._controls is None or self._controls.llm is not self.llm:
            vocab = compat.vocab(self.llm)
            wanted = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
            ids: dict[str, int] = {}
            for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
                if llama_cpp.llama_vocab_get_attr(vocab, token) & wanted:
                    text = self._piece(token)
                    if text:
                        ids.setdefault(text, token)
            self._controls = ControlTokens(self.llm, ids)
        return self._controls

    def fit_prompt(self, cmd: p.Chat) -> tuple[list[int], int]:
        """Tokenize the conversation, dropping the oldest turns until it fits.

        The system prompt and the newest user message are always kept; a reply needs
        room too, so ``min(max_tokens, n_ctx / 2)`` tokens are kept free. The cut is
        found in linear time (:mod:`backends.inference.prompt_fit`).
        """
        assert self.llm is not None and self.template is not None
        messages = [dict(m) for m in cmd.messages]
        if not messages:
            raise ValueError("the conversation is empty")
        n_ctx = self.llm.n_ctx()
        budget = p.prompt_budget(n_ctx, cmd.sampling.max_tokens)
        if cmd.raw:  # a completion: the text as it is, all of it content
            tokens = self.tokenize([(messages[0]["content"], True)])
            if len(tokens) > budget:
                raise ValueError(f"the prompt is {len(tokens)} tokens long but the context "
                                 f"holds {n_ctx} (with {n_ctx - budget} kept for the reply)")
            return tokens, 0
        shaped, tools = shape(messages, cmd.tools, self.template.text,
                              self._control_tokens().defuse)
        return ConversationFit(
            shaped, cmd.continue_last, budget, n_ctx,
            render=lambda kept: self.render(kept, cmd.continue_last, cmd.request_id, tools),
            tokenize=self.tokenize, template=self.template,
            should_stop=lambda: self.closing or cmd.request_id in self.cancelled,
            tools=tools).fit()

    def _prefill(self, tokens: list[int], cached: int, request_id: str) -> bool:
        """Evaluate all but the last prompt token now, so that the last one is always
        decoded alone, as it is when the prompt is already cached: otherwise its logits
        differ slightly between the two cases, and a fixed seed would give a different
        reply on Regenerate than on the first try. Read in chunks, so a Stop (or the
        app's end) is heard within one (see backends.inference.prefill); False then."""
        if cached >= len(tokens) - 1:
            return True
        assert self.llm is not None
        compat.rewind(self.llm, cached)
        return prefill(self.llm, tokens[cached:-1],
                       lambda: self.closing or request_id in self.cancelled)

    def generate(self, cmd: p.Chat, tokens: list[int], dropped: int, started: float,
                 grammar: compat.GrammarGuard | LazyCall | None = None) -> None:
        """Decode the reply into a :class:`ReplyStream` until the model ends its turn, a
        stop string, Stop, ``max_tokens`` or a full context, whichever comes first."""
        llm = self.llm
        assert llm is not None and self.template is not None
        s = cmd.sampling
        if cmd.n_threads:
            compat.set_threads(llm, cmd.n_threads)
        cached = common_prefix(compat.cached_tokens(llm), tokens)
        stopped = not self._prefill(tokens, cached, cmd.request_id)
        if s.seed is not None:
            llm.set_seed(s.seed)
        vocab = compat.vocab(llm)
        n_ctx = llm.n_ctx()
        reply = ReplyStream(self.channel.send, cmd.request_id, self._stops(s.stop), started)
        finish = "cancelled" if stopped else "length"
        knobs = {"top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p,
                 "temp": s.temperature, "repeat_penalty": s.repeat_penalty}
        for token in () if stopped else (
                grammar.generate(tokens, **knobs) if isinstance(grammar, LazyCall)
                else compat.generate(llm, tokens, grammar, **knobs)):
            reply.arrived()
            if llama_cpp.llama_vocab_is_eog(vocab, token) or reply.add(llm.detokenize([token])):
                finish = "stop"
                break
            if self.closing or cmd.request_id in self.cancelled:
                finish = "cancelled"
                break
            if reply.completion >= s.max_tokens:
                finish = "length"
                break
            if compat.n_cached(llm) + 1 >= n_ctx:
                finish = "context_full"
                break
        reply.end(finish)
        self.channel.send(p.Done(cmd.request_id, reply.text, reply.stats(
            finish, prompt_tokens=len(tokens), cached=cached, dropped=dropped,
            template_source=self.template.source, adapter=self.adapters.current)))

def main() -> None:
    channel = connect(sys.argv[1])
    llama_log = LlamaLog()  # noqa: F841 - must stay alive for the process lifetime
    channel.send(p.Hello(protocol_version=p.PROTOCOL_VERSION, pid=os.getpid(),
                         backend_version=f"llama-cpp-python {llama_cpp.__version__}",
                         gpu_offload=bool(llama_cpp.llama_supports_gpu_offload())))
    Worker(channel).run()
    channel.conn.close()


if __name__ == "__main__":
    main()
