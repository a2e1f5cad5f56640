"""The inference worker's message protocol, in one place.

The GUI/CLI process and the llama.cpp worker process talk only through these typed
messages, serialised as JSON (:mod:`app.workers.wire`) over the authenticated local channel
of :mod:`app.workers.supervisor`. ``Hello``'s base, ``Log``, ``Error`` and ``WorkerDied`` are
the lifecycle events both workers share (:mod:`app.workers.lifecycle`).

Bump :data:`PROTOCOL_VERSION` on any incompatible change: the worker checks it in the
``Hello`` handshake and refuses a mismatched client with a clear error.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar

from app.workers import lifecycle
from app.workers.lifecycle import Error, Log, WorkerDied  # shared; callers write p.Error
from app.workers.wire import WireError, from_json, to_json

# 4: SamplingParams.grammar/json_schema (structured output), Chat.raw (completions),
#    Load.cache_type (KV cache type), Load.prompt_lookup (n-gram speculative decoding).
# 5: Chat.tools, and tool turns in Chat.messages (app.chat.tool_prompt).
# 6: SamplingParams.call_schema (a tool call held to its schema once it has begun).
PROTOCOL_VERSION = 6
CACHE_TYPES = ("f16", "q8_0")
"""The KV cache types a load may ask for."""


# --------------------------------------------------------------------------- commands


@dataclass
class Load:
    """Load a GGUF model, replacing any loaded one."""

    path: str
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    n_threads: int | None = None
    flash_attn: bool = False
    # llama.cpp's extra buffer types (repacked/AMX kernels); app.inference.kernels decides.
    extra_bufts: bool = True
    # The chat template: "auto", "raw" or a family (app.chat.template_choice.CHOICES).
    template: str = "auto"
    # The KV cache's element type (CACHE_TYPES); q8_0 needs flash attention.
    cache_type: str = "f16"
    # Prompt-lookup (n-gram) speculative decoding: draft this many tokens copied from
    # earlier in the context, verified in one batch; 0 is off. The reply is the same.
    prompt_lookup: int = 0
    kind: ClassVar[str] = "load"


@dataclass
class SamplingParams:
    """Sampling settings of one reply; defaults follow llama.cpp's own."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    max_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    # Structured output, enforced by llama.cpp's grammar sampler: a GBNF grammar, or a
    # JSON schema (as JSON text) that the worker turns into one. At most one of the two.
    grammar: str = ""
    json_schema: str = ""
    # With tools offered and the model free to call: the JSON schema of one call
    # (app.chat.tools.auto_call_schema), held by grammar once the reply begins a call
    # (backends.inference.call_grammar). Ignored when a grammar or JSON schema holds the
    # whole reply.
    call_schema: str = ""

    def __post_init__(self) -> None:
        """Types first (a value from an API client or settings.json may be anything, and
        llama.cpp's ctypes calls end the worker on a wrong one), then ranges."""
        for name in ("temperature", "top_p", "min_p", "repeat_penalty"):
            _check_type(name, getattr(self, name), numbers.Real, "a finite number")
        for name in ("top_k", "max_tokens", "seed"):
            value = getattr(self, name)
            if value is not None or name != "seed":
                _check_type(name, value, numbers.Integral, "a whole number")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) for s in self.stop):
            raise ValueError("stop must be a list of strings")
        for name in ("grammar", "json_schema", "call_schema"):
            _check_type(name, getattr(self, name), str, "text")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not 0 <= self.min_p <= 1:
            raise ValueError("min_p must be in [0, 1]")
        if self.repeat_penalty <= 0:
            raise ValueError("repeat_penalty must be > 0")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.grammar and self.json_schema:
            raise ValueError("give a grammar or a JSON schema, not both")
        for schema in (self.json_schema, self.call_schema):
            if schema:
                check_json_schema(schema)


def prompt_budget(n_ctx: int, max_tokens: int) -> int:
    """Tokens a prompt may take: the context less the room kept for the reply (at most
    half of it). The one rule the worker fits a conversation by, and the chat sizes the
    passages it cites by (app.docs.citing)."""
    return n_ctx - min(max_tokens, n_ctx // 2)


def _check_type(name: str, value: Any, kind: type, what: str) -> None:
    """Raise ValueError naming the field unless ``value`` is a ``kind`` (never a bool)."""
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and kind is numbers.Real:
        ok = math.isfinite(value)
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(f"{name} must be {what}, not {shown}")


def check_json_schema(text: str) -> None:
    """Raise ValueError with a one-line reason unless ``text`` is a JSON object."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the JSON schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise ValueError("the JSON schema must be a JSON object, like {\"type\": \"object\"}")


@dataclass
class Chat:
    """Render ``messages`` with the model's chat template and stream a reply."""

    request_id: str
    messages: list[dict[str, str]]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # Continue the last assistant message instead of starting a new one.
    continue_last: bool = False
    # Threads for this reply when the load left them to Hearth (other heavy work may
    # have started since); None keeps the loaded model's.
    n_threads: int | None = None
    # No chat template: the one message's content is the whole prompt, as plain text
    # (the server's /v1/completions).
    raw: bool = False
    # Tools the model may call: OpenAI's definitions as JSON text ("" for none). An
    # assistant message's calls travel in its "tool_calls" (JSON text), a tool's result
    # as a "tool" message with "tool_call_id" (see app.chat.tool_prompt).
    tools: str = ""
    kind: ClassVar[str] = "chat"


@dataclass
class Cancel:
    """Stop the reply in flight; the worker answers with its ``Done`` (reason "cancelled")."""

    request_id: str
    kind: ClassVar[str] = "cancel"


@dataclass
class Unload:
    kind: ClassVar[str] = "unload"


@dataclass
class Shutdown:
    kind: ClassVar[str] = "shutdown"


@dataclass
class SetAdapter:
    """Apply a GGUF LoRA adapter to the loaded base (None: the base alone), no reload."""

    path: str | None
    scale: float = 1.0
    kind: ClassVar[str] = "set_adapter"


# ----------------------------------------------------------------------------- events


@dataclass
class Hello(lifecycle.Hello):
    """First event of the inference worker: its protocol, and which llama.cpp it runs."""

    backend_version: str
    gpu_offload: bool


@dataclass
class LoadProgress:
    fraction: float
    kind: ClassVar[str] = "load_progress"


@dataclass
class Loaded:
    path: str
    n_ctx: int
    n_ctx_train: int
    n_gpu_layers: int
    n_threads: int
    template_source: str  # "gguf", "family:<name>", "chosen:<name>" or "raw"
    template_sha256: str
    load_seconds: float
    extra_bufts: bool = True
    cache_type: str = "f16"
    flash_attn: bool = False
    prompt_lookup: int = 0
    kind: ClassVar[str] = "loaded"


@dataclass
class Unloaded:
    kind: ClassVar[str] = "unloaded"


@dataclass
class ContextTrimmed:
    """Old turns were left out of the prompt so the conversation fits the context."""

    request_id: str
    dropped_messages: int
    prompt_tokens: int
    n_ctx: int
    kind: ClassVar[str] = "context_trimmed"


@dataclass
class Tokens:
    """A batch of decoded text; batching keeps the channel cheap at high speeds."""

    request_id: str
    text: str
    n_tokens: int
    kind: ClassVar[str] = "tokens"


@dataclass
class ReplyStats:
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    ttft_s: float
    prefill_tps: float
    decode_tps: float
    total_s: float
    finish_reason: str  # "stop", "length", "context_full", "cancelled"
    dropped_messages: int = 0
    template_source: str = ""
    adapter: str = ""
    """The adapter file applied to the base for this reply ("" for the base alone)."""


@dataclass
class Done:
    request_id: str
    text: str
    stats: ReplyStats
    kind: ClassVar[str] = "done"


@dataclass
class AdapterSet:
    path: str | None
    seconds: float
    kind: ClassVar[str] = "adapter_set"


@dataclass
class KernelFallback:
    """Synthesised by the client: the worker crashed with llama.cpp's optimized kernels
    and was restarted with the safe ones (the request in flight goes on)."""

    signal: int
    message: str
    kind: ClassVar[str] = "kernel_fallback"


COMMANDS = (Load, Chat, Cancel, Unload, Shutdown, SetAdapter)
EVENTS = (Hello, LoadProgress, Loaded, Unloaded, ContextTrimmed, Tokens, Done, Log, Error,
          KernelFallback, WorkerDied, AdapterSet)
_BY_KIND: dict[str, type] = {cls.kind: cls for cls in (*COMMANDS, *EVENTS)}
_NESTED: dict[tuple[type, str], type] = {(Chat, "sampling"): SamplingParams,
                                         (Done, "stats"): ReplyStats}


class ProtocolError(WireError):
    """A message that is not valid JSON or not one of ours."""


def encode(message: Any) -> bytes:
    return to_json(message).encode("utf-8")


def decode(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not a UTF-8 message: {exc}") from exc
    return from_json(text, _BY_KIND, _NESTED, ProtocolError)
