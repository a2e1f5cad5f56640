"""One reply on its way out of the inference worker: text, token batches and stats.

llama.cpp hands the worker one token at a time; the app wants text. This holds back the
end of the text that could still become a stop string (a stop string is never shown),
decodes UTF-8 across token boundaries, sends what is ready in ``Tokens`` batches (the
first token at once, then at most every :data:`FLUSH_INTERVAL_S`, so the window redraws
at a steady pace however fast the model is) and times the reply for its
:class:`app.inference.protocol.ReplyStats`. When to stop generating is the worker's
business (:meth:`backends.inference.llama_worker.Worker.generate`).
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable

from app.inference import protocol as p
from backends.inference.token_text import split_stop

# Token batches are flushed at most this often (the first token always at once).
FLUSH_INTERVAL_S = 0.02


class ReplyStream:
    def __init__(self, send: Callable[[p.Tokens], None], request_id: str, stops: list[str],
                 started: float) -> None:
        self.send = send
        self.request_id = request_id
        self.stops = stops
        self.started = started
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.pending = ""  # decoded, not yet sent: it may be the start of a stop string
        self.batch, self.batch_tokens, self.last_flush = "", 0, 0.0
        self.completion = 0
        self.now = started
        self.t_first: float | None = None
        self.t_last = started

    def arrived(self) -> None:
        """A token came out of llama.cpp (an end-of-generation token too): its time."""
        self.now = time.perf_counter()
        if self.t_first is None:
            self.t_first = self.now
        self.t_last = self.now

    def add(self, piece: bytes) -> bool:
        """One token's bytes into the reply; True when they complete a stop string."""
        self.completion += 1
        self.pending += self.decoder.decode(piece)
        emit, hit = split_stop(self.pending, self.stops)
        self.pending = self.pending[len(emit):]
        self.text += emit
        self.batch += emit
        self.batch_tokens += 1
        if not hit and (self.completion == 1
                        or self.now - self.last_flush >= FLUSH_INTERVAL_S):
            self.flush()
        return hit

    def flush(self) -> None:
        if self.batch or self.batch_tokens:
            self.send(p.Tokens(self.request_id, self.batch, self.batch_tokens))
        self.batch, self.batch_tokens, self.last_flush = "", 0, time.perf_counter()

    def end(self, finish: str) -> None:
        """Send the rest: held-back text too, unless the reply ended on a stop string."""
        if finish != "stop":
            self.text += self.pending
            self.batch += self.pending
        self.flush()

    def stats(self, finish: str, *, prompt_tokens: int, cached: int, dropped: int,
              template_source: str, adapter: str) -> p.ReplyStats:
        t_first = self.t_first or time.perf_counter()
        ttft = t_first - self.started
        decode_s = self.t_last - t_first
        return p.ReplyStats(
            prompt_tokens=prompt_tokens, cached_tokens=cached,
            completion_tokens=self.completion, ttft_s=round(ttft, 4),
            prefill_tps=round((prompt_tokens - cached) / ttft, 2) if ttft > 0 else 0.0,
            decode_tps=(round((self.completion - 1) / decode_s, 2) if decode_s > 0
                        else 0.0),
            total_s=round(time.perf_counter() - self.started, 4), finish_reason=finish,
            dropped_messages=dropped, template_source=template_source, adapter=adapter)
