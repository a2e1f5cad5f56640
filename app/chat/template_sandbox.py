"""Running a stranger's Jinja program with a budget: the sandbox under chat templates.

Chat templates are Jinja programs shipped inside model files by strangers, so they run
only in Jinja's immutable sandbox (jinja2 >= 3.1.6, which closes the known sandbox
escapes). The sandbox stops a template from reaching the system, not from running
forever or filling memory (``{% for a in r %}{% for b in r %}…`` or ``'A' * 2**30``), so
every render also runs under a :class:`RenderLimits` budget: a wall-clock deadline, a
cap on loop iterations, and a cap on the size of any string it builds or outputs. The
budget is checked on every loop step, call, attribute lookup, operator, filter and
output chunk, before the expensive allocation where it can be predicted. A caller may
also pass ``should_stop`` (e.g. a Stop button or a dead parent), checked at the same
points. What a chat template is and how a conversation is rendered through it is
:mod:`app.chat.template`.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.errors import HearthError


class ChatTemplateError(HearthError, ValueError):
    """The template failed to render; the message names the template's complaint."""


class TemplateCancelled(ChatTemplateError):
    """``should_stop`` said stop while the template was rendering."""


@dataclass(frozen=True)
class RenderLimits:
    """What one render of an untrusted template may spend."""

    seconds: float = 5.0
    """Wall-clock time; real templates take milliseconds even for long chats."""
    max_chars: int = 8_000_000
    """Largest string the template may build or output (~2M tokens: far past any
    context a model here holds, far below what would exhaust memory)."""
    max_steps: int = 1_000_000
    """Loop iterations, calls and lookups together."""

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.max_chars <= 0 or self.max_steps <= 0:
            raise ValueError("render limits must be positive")


DEFAULT_LIMITS = RenderLimits()
# Widths and counts a template passes to filters and string methods (center, indent,
# ljust, zfill, format widths): real templates use single digits.
MAX_WIDTH = 65_536
_BIG_FORMAT_WIDTH = re.compile(r"\d{6,}")
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


def render_bounded(text: str, variables: dict[str, Any], limits: RenderLimits = DEFAULT_LIMITS,
                   should_stop: Callable[[], bool] | None = None) -> str:
    """Render the template ``text`` with ``variables`` in the bounded sandbox; raises
    ChatTemplateError (TemplateCancelled on a stop), and nothing else: the template is a
    stranger's program (``{{ 1/0 }}`` raises ZeroDivisionError), and the worker must
    answer that reply, not die of it."""
    template = _compile(text)
    budget = _Budget(limits, should_stop)
    previous = getattr(_active, "budget", None)
    _active.budget = budget
    try:
        chunks = []
        for chunk in template.generate(**variables):
            budget.output(len(chunk))
            chunks.append(chunk)
        return "".join(chunks)
    except _LimitReached as exc:
        raise exc.error from None
    except TemplateError as exc:
        raise ChatTemplateError(f"the model's chat template failed: {exc}") from exc
    except RecursionError:
        raise ChatTemplateError("the model's chat template failed: it calls itself "
                                "without end; use another model or set a template "
                                "that works") from None
    except MemoryError:
        raise ChatTemplateError("the model's chat template failed: it needs more "
                                "memory than this computer has") from None
    except ChatTemplateError:
        raise
    except Exception as exc:  # see the docstring
        raise ChatTemplateError(f"the model's chat template failed: "
                                f"{type(exc).__name__}: {exc}") from exc
    finally:
        _active.budget = previous


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


class _LimitReached(TemplateError):
    """Carries the ChatTemplateError to raise past Jinja's own error handling."""

    def __init__(self, error: ChatTemplateError) -> None:
        super().__init__(str(error))
        self.error = error


_active = threading.local()  # the budget of the render running on this thread


class _Budget:
    def __init__(self, limits: RenderLimits, should_stop: Callable[[], bool] | None
                 ) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.should_stop = should_stop
        self.steps = 0
        self.chars = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            self._fail(f"it runs more than {self.limits.max_steps:,} steps")
        if time.monotonic() > self.deadline:
            self._fail(f"it ran longer than {self.limits.seconds:g} s")
        if self.should_stop is not None and self.should_stop():
            raise _LimitReached(TemplateCancelled("rendering the chat template was "
                                                  "stopped"))

    def size(self, n: int) -> None:
        """Refuse a string of ``n`` characters before it is built."""
        if n > self.limits.max_chars:
            self._fail(f"it builds text longer than {self.limits.max_chars:,} characters")

    def output(self, n: int) -> None:
        self.step()
        self.chars += n
        self.size(self.chars)

    def _fail(self, why: str) -> None:
        raise _LimitReached(ChatTemplateError(
            f"the model's chat template was stopped: {why}. It may be broken or hostile; "
            "use another model or give this one a working template"))


def _budget() -> _Budget:
    budget = getattr(_active, "budget", None)
    # Outside ChatTemplate.render (nothing renders that way): size limits only.
    return budget if budget is not None else _Budget(DEFAULT_LIMITS, None)


def _length(value: object) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _check_result(value: object) -> object:
    n = _length(value)
    if n is not None:
        _budget().size(n)
    return value


def _check_widths(args: Iterable[object]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_WIDTH:
            _budget()._fail(f"it asks for a width or count of {arg:,}")


def _predict_binop(op: str, left: object, right: object) -> None:
    budget = _budget()
    budget.step()
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            n = _length(seq)
            if n is not None and isinstance(times, int):
                budget.size(n * max(0, times))
    elif op == "+":
        a, b = _length(left), _length(right)
        if a is not None and b is not None:
            budget.size(a + b)
    elif op == "**":
        if (isinstance(left, (int, float)) and isinstance(right, (int, float))
                and abs(right) > 1024 and abs(left) > 1):
            budget._fail(f"it raises a number to the power {right:,}")
    elif op == "%" and isinstance(left, str):
        if _BIG_FORMAT_WIDTH.search(left):
            budget._fail("it formats with a huge width")
        if "*" in left:  # a width taken from the arguments
            _check_widths(right if isinstance(right, tuple) else (right,))


# Filters whose arguments after the value are widths or counts.
_WIDTH_FILTERS = {"center", "indent", "wordwrap", "truncate", "batch", "slice"}


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter or test that counts as a step, refuses huge widths, checks its result."""
    skip = 2 if hasattr(fn, "jinja_pass_arg") else 1  # (context,) value

    @functools.wraps(fn)  # keeps jinja_pass_arg, so context-taking filters still work
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        if name in _WIDTH_FILTERS:
            _check_widths((*args[skip:], *kwargs.values()))
        elif (name == "format" and len(args) >= skip and isinstance(args[skip - 1], str)
              and _BIG_FORMAT_WIDTH.search(args[skip - 1])):
            budget._fail("it formats with a huge width")
        return _check_result(fn(*args, **kwargs))
    return bounded


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every step of a template charged to a budget."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters["tojson"] = _tojson
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        # jinja2 types its tests as builtins.function, which mypy will not call a Callable.
        self.tests = {name: _bounded_filter(name, f)  # type: ignore[arg-type]
                      for name, f in self.tests.items()}

    def _parse(self, source: str, name: str | None, filename: str | None
               ) -> nodes.Template:
        """Route every loop's iterable and every ``~`` concatenation through the budget:
        neither passes through a sandbox hook otherwise."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"),
                                   [loop.iter], [], None, None, lineno=loop.lineno)
        for concat in list(tree.find_all(nodes.Concat)):
            parts = nodes.List(concat.nodes, lineno=concat.lineno)
            concat.nodes = [nodes.Call(nodes.EnvironmentAttribute("bounded_concat"),
                                       [parts], [], None, None, lineno=concat.lineno)]
        return tree

    def bounded_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = _budget()
        for item in iterable:
            budget.step()
            yield item

    def bounded_concat(self, parts: list[Any]) -> str:
        texts = [str(part) for part in parts]
        _budget().size(sum(map(len, texts)))
        return "".join(texts)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        _predict_binop(operator_, left, right)
        return _check_result(super().call_binop(context, operator_, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any
             ) -> Any:
        budget = _budget()
        budget.step()
        owner = getattr(__obj, "__self__", None)
        method = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if method in _WIDTH_METHODS:
                _check_widths((*args, *kwargs.values()))
            elif method == "replace" and len(args) >= 2:
                old, new = str(args[0]), str(args[1])
                count = owner.count(old) if old else len(owner) + 1
                budget.size(len(owner) + count * max(0, len(new) - len(old)))
            elif method == "join" and args and isinstance(args[0], (list, tuple)):
                budget.size(len(owner) * len(args[0])
                            + sum(len(x) for x in args[0] if isinstance(x, str)))
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format with a width in the format string, or taken from the arguments
        (``'{:{}}'``), is refused before it pads anything."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__
        if _BIG_FORMAT_WIDTH.search(text):
            _budget()._fail("it formats with a huge width")
        if not _NESTED_FIELD.search(text):
            return wrapped

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            _check_widths((*args, *kwargs.values()))
            return wrapped(*args, **kwargs)
        return checked

    def getattr(self, obj: Any, attribute: str) -> Any:  # Jinja's name
        _budget().step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().step()
        return super().getitem(obj, argument)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """``tojson`` as Hugging Face renders templates (and models were trained): keys in
    their order, ``<`` and ``>`` as they are. Jinja's own sorts keys and writes ``<`` as
    ``\\u003c`` for HTML, which would show a model tool definitions in a layout it never
    saw."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def _compile(text: str) -> Template:
    env = _BoundedSandbox(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(text)
    except TemplateError as exc:
        raise ChatTemplateError(f"the model's chat template does not parse: {exc}") from exc
