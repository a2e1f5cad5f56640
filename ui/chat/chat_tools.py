"""The open conversation's tools in the window: its MCP servers, and every call asked about.

:class:`ChatTools` belongs to the :class:`~ui.chat.chat_view_model.ChatViewModel` and
does for the window what ``hearth chat --mcp`` does in the terminal
(:func:`app.cli.chat.settle`):

- A conversation with tools on starts its servers when it first needs them (a reply is
  asked for, or an allowed call runs), on a background thread: a Python server takes
  seconds to start. At most one conversation's toolbox runs; it stops when another
  conversation is opened, when the tools change, and when the window closes.
- A reply that called tools is stored with its steps pending. Each card asks the person
  (Allow once / Always for this tool / Deny); "always" holds for this conversation until
  Hearth closes. An allowed call runs off the GUI thread (a call may take up to
  60 s), and each outcome is stored at once, so the cards show it and nothing is lost.
- A running call can be stopped: its card's Stop ends it at once (stored ``stopped``; the
  model is told, as of a denied call, and goes on), and the window's Stop or Esc ends the
  open conversation's calls the same way but leaves the model waiting for the person,
  as Stop does to a reply. The server stays up for the next call
  (:class:`~app.tools.mcp_client.CallStop` says why).
- Once every call of the reply is decided, the model is asked to go on (the view model's
  :meth:`~ui.chat.chat_view_model.ChatViewModel.follow_up`), and the next reply streams
  like any other. A failing or hanging call is a failed step; the model is told and goes
  on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.chat.conversations import Message, UnknownConversation
from app.chat.tool_steps import StepState, ToolStep
from app.chat.tools import Tool
from app.tools.chat_settings import ToolSettings
from app.tools.mcp_client import CallStop
from app.tools.servers import ServerList
from app.tools.toolbox import Toolbox
from ui.background import Background

if TYPE_CHECKING:
    from ui.chat.chat_view_model import ChatViewModel

log = logging.getLogger("hearth.tools")


class Answer(StrEnum):
    """The person's answer on a call's card."""

    ONCE = "once"
    ALWAYS = "always"
    DENY = "deny"


@dataclass(frozen=True)
class _Running:
    """A call that runs now (or waits for its servers to start), and what stops it."""

    conversation_id: int
    stop: CallStop


class ChatTools(QObject):
    steps_changed = Signal(int)    # a message whose calls started or stopped running
    state_changed = Signal()       # the toolbox started, stopped or changed settings

    def __init__(self, chat: ChatViewModel) -> None:
        super().__init__(chat)
        self.chat = chat
        self.servers = ServerList(chat.workspace.home.root)
        self.toolbox: Toolbox | None = None
        self.toolbox_for: int | None = None
        """The conversation whose toolbox runs (``toolbox``)."""
        self.starting: int | None = None
        """The conversation whose toolbox is starting."""
        self._then: dict[int, list[Callable[[], None]]] = {}  # run once started
        self._calls: dict[tuple[int, int], _Running] = {}  # (message id, step) running now
        self._allowed: dict[int, set[str]] = {}   # conversation -> tools always allowed
        self._go_on_later: set[int] = set()       # decided, the model not asked yet
        self._background = Background(self)
        chat.conversation_opened.connect(self._on_conversation_opened)
        chat.reply_finished.connect(self._on_reply_finished)
        chat.model_state_changed.connect(self._go_on_waiting)

    # ------------------------------------------------------------ settings

    def settings_of(self, conversation_id: int | None) -> ToolSettings:
        if conversation_id is None:
            return ToolSettings()
        try:
            return ToolSettings.of(self.chat.store.get(conversation_id).settings)
        except UnknownConversation:
            return ToolSettings()

    def set_settings(self, conversation_id: int, settings: ToolSettings) -> None:
        """Store a conversation's tool settings; its servers restart with the next
        message when they changed."""
        conversation = self.chat.store.get(conversation_id)
        before = ToolSettings.of(conversation.settings)
        self.chat.store.update(conversation_id, settings=settings.stored(conversation.settings))
        if self.toolbox is not None and self.toolbox_for == conversation_id:
            if before.servers != settings.servers:
                self._close_toolbox()
            else:
                self.toolbox.max_rounds, self.toolbox.required = (settings.max_rounds,
                                                                  settings.required)
        self.state_changed.emit()

    def status(self, conversation_id: int | None) -> str:
        """What the conversation's tools are doing, in a line for the settings panel."""
        if not self.settings_of(conversation_id).on:
            return "Tools are off in this conversation."
        if self.starting == conversation_id:
            return "Starting the servers…"
        if self.toolbox is None or self.toolbox_for != conversation_id:
            return "The servers start with your next message."
        names = [t.name for t in self.toolbox.offer().tools]
        lines = [f"Running, offering {', '.join(names)}." if names
                 else "Running, but no tool is offered."]
        return "\n".join(lines + self.toolbox.problems)

    # ------------------------------------------------------- the toolbox

    def must_start(self, conversation_id: int) -> bool:
        """The conversation uses tools and its servers are not running yet."""
        return self.settings_of(conversation_id).on and self.toolbox_for != conversation_id

    def offer(self, conversation_id: int) -> None:
        """Set what the session offers with the next request: this conversation's tools."""
        offer = None
        if (self.toolbox is not None and self.toolbox_for == conversation_id
                and self.settings_of(conversation_id).on):
            offer = self.toolbox.offer()
        self.chat.session.tools = offer if offer is not None and offer.tools else None

    def offered_tools(self, conversation_id: int, then: Callable[[list[Tool]], None]) -> None:
        """``then(tools)`` with the tools the conversation offers, its servers started
        first (off the GUI thread) when they are not running: a correction of a call
        picks from them and keeps their definitions. No tools when they are off."""
        def offered() -> None:
            running = self.toolbox is not None and self.toolbox_for == conversation_id
            then(self.toolbox.offer().tools if running and self.toolbox is not None else [])

        if not self.settings_of(conversation_id).on or self.toolbox_for == conversation_id:
            offered()
        else:
            self.start(conversation_id, offered)

    def start(self, conversation_id: int, then: Callable[[], None]) -> None:
        """Start the conversation's servers off the GUI thread; ``then()`` once they run
        (or failed to: a server that cannot start is named and left out). One start at
        a time: another conversation's waits for it."""
        self._then.setdefault(conversation_id, []).append(then)
        self._start_next()

    def _start_next(self) -> None:
        if self.starting is not None or not self._then:
            return
        conversation_id = next(iter(self._then))
        self._close_toolbox()
        settings = self.settings_of(conversation_id)
        box = settings.toolbox(self.servers.entries(), self.chat.workspace.home.logs)
        self.starting = conversation_id
        self.state_changed.emit()
        self._background.run(box.start, lambda _offer: self._started(conversation_id, box),
                             lambda exc: self._start_failed(conversation_id, box, exc),
                             name="mcp-start")

    def _start_failed(self, conversation_id: int, box: Toolbox, exc: BaseException) -> None:
        log.warning("the tools of conversation %s did not start: %s", conversation_id, exc)
        box.problems.append(f"The servers did not start: {exc}")
        self._started(conversation_id, box)

    def _started(self, conversation_id: int, box: Toolbox) -> None:
        self.starting = None
        self.toolbox, self.toolbox_for = box, conversation_id
        for name in self._allowed.get(conversation_id, ()):
            box.always_allow(name)
        for call in self._then.pop(conversation_id, []):
            call()
        if self._then:
            self._start_next()
        elif conversation_id != self.chat.conversation_id and not self._busy():
            self._close_toolbox()  # another conversation was opened meanwhile
        self.state_changed.emit()

    def _close_toolbox(self) -> None:
        box, self.toolbox, self.toolbox_for = self.toolbox, None, None
        if box is not None:  # a stdio server takes a moment to stop
            self._background.run(box.close, lambda _r: None, name="mcp-stop")

    def _busy(self) -> bool:
        """A call is running (on the one toolbox there is)."""
        return bool(self._calls)

    # ------------------------------------------------------------- calls

    def running(self, message_id: int) -> set[int]:
        """The steps of a message that are running now."""
        return {index for (message, index) in self._calls if message == message_id}

    def calls_running(self, conversation_id: int | None) -> bool:
        """A call of this conversation runs now: the reply is still under way."""
        return any(c.conversation_id == conversation_id for c in self._calls.values())

    def decide(self, message_id: int, index: int, answer: str) -> None:
        """The person's answer about one pending call (its card's buttons)."""
        message = self.chat.store.message(message_id)
        steps = message.tool_steps
        if not 0 <= index < len(steps) or steps[index].state is not StepState.PENDING \
                or (message_id, index) in self._calls:
            return
        cid = message.conversation_id
        if answer == Answer.DENY:
            steps[index].state = StepState.DENIED
            self._store(message, steps)
            return
        if answer == Answer.ALWAYS:
            name = steps[index].call.name
            self._allowed.setdefault(cid, set()).add(name)
            if self.toolbox is not None and self.toolbox_for == cid:
                self.toolbox.always_allow(name)
            for other, step in enumerate(steps):  # its other calls in this reply, too
                if other != index and step.call.name == name \
                        and step.state is StepState.PENDING:
                    self._run(message, other)
        self._run(message, index)

    def stop_call(self, message_id: int, index: int) -> None:
        """A running card's Stop: the call ends now, stored as stopped; the model is told
        and goes on once every call of the reply is decided."""
        self._stop(message_id, index, go_on=True)

    def stop_calls(self, conversation_id: int) -> None:
        """The window's Stop (its button, Esc): the conversation's running calls end as
        stopped, and the conversation waits for the person (the model is not asked on)."""
        for message_id, index in [key for key, running in self._calls.items()
                                  if running.conversation_id == conversation_id]:
            self._stop(message_id, index, go_on=False)
        self._go_on_later.discard(conversation_id)

    def _stop(self, message_id: int, index: int, go_on: bool) -> None:
        running = self._calls.get((message_id, index))
        if running is None:
            return
        running.stop.stop()  # its thread returns at once; a late outcome is dropped
        try:
            message = self.chat.store.message(message_id)
        except LookupError:  # its conversation was deleted meanwhile
            del self._calls[(message_id, index)]
            return
        step = message.tool_steps[index]
        self._ran(message, index, ToolStep(step.call, StepState.STOPPED, "", step.server),
                  running.stop, go_on)

    def _run(self, message: Message, index: int) -> None:
        stop = CallStop()
        self._calls[(message.id, index)] = _Running(message.conversation_id, stop)
        self.steps_changed.emit(message.id)
        cid = message.conversation_id
        if self.toolbox is None or self.toolbox_for != cid:
            self.start(cid, lambda: self._run_now(message, index, stop))
        else:
            self._run_now(message, index, stop)

    def _run_now(self, message: Message, index: int, stop: CallStop) -> None:
        if stop.asked:  # stopped while its servers started: stored as stopped already
            return
        box = self.toolbox
        if box is None or self.toolbox_for != message.conversation_id:  # stopped meanwhile
            self._ran(message, index, _failed(message.tool_steps[index],
                                              "the tools were stopped"), stop)
            return
        step = ToolStep(message.tool_steps[index].call, server=message.tool_steps[index].server)
        self._background.run(lambda: box.run(step, stop),
                             lambda done: self._ran(message, index, done, stop),
                             lambda exc: self._ran(message, index, _failed(step, str(exc)), stop),
                             name="mcp-call")

    def _ran(self, message: Message, index: int, step: ToolStep, stop: CallStop,
             go_on: bool = True) -> None:
        running = self._calls.get((message.id, index))
        if running is None or running.stop is not stop:
            return  # stopped meanwhile: that outcome is stored, this one is late
        del self._calls[(message.id, index)]
        try:
            steps = self.chat.store.message(message.id).tool_steps
        except LookupError:  # its conversation was deleted meanwhile
            return
        if index < len(steps):
            steps[index] = step
        self._store(message, steps, go_on)

    def _store(self, message: Message, steps: list[ToolStep], go_on: bool = True) -> None:
        """Keep what became of the calls, show it, and (``go_on``) let the model go on
        once all are decided."""
        self.chat.session.resolve(message.id, steps)
        self.steps_changed.emit(message.id)
        self.chat.messages_changed.emit(message.conversation_id)
        if go_on and all(s.state is not StepState.PENDING for s in steps) \
                and not self.running(message.id):
            self._go_on_later.add(message.conversation_id)
            self._go_on_waiting()

    def _go_on_waiting(self) -> None:
        """Ask the model to go on in each conversation whose calls are all decided, once
        it can answer (it may be writing a reply elsewhere, or loading)."""
        for cid in list(self._go_on_later):
            tail = self._tail(cid)[-1:]
            if not tail or not tail[0].tool_steps or any(
                    s.state is StepState.PENDING for s in tail[0].tool_steps):
                self._go_on_later.discard(cid)  # answered, or changed meanwhile
            elif self.chat.follow_up(cid) is not None:
                self._go_on_later.discard(cid)

    def _tail(self, conversation_id: int) -> list[Message]:
        try:
            return self.chat.store.messages(conversation_id)
        except UnknownConversation:
            return []

    # ------------------------------------------------------------ events

    def _on_reply_finished(self, reply: object) -> None:
        saved = getattr(reply, "saved", None)
        if isinstance(saved, Message) and saved.tool_steps:
            allowed = self._allowed.get(saved.conversation_id, set())
            for index, step in enumerate(saved.tool_steps):
                if step.state is StepState.PENDING and step.call.name in allowed:
                    self._run(saved, index)
        self._go_on_waiting()

    def _on_conversation_opened(self, conversation_id: int) -> None:
        if self.toolbox_for is not None and self.toolbox_for != conversation_id \
                and not self._busy():
            self._close_toolbox()
        self.state_changed.emit()

    def shutdown(self) -> None:
        """Stop the calls and the servers (the window is closing): no child process or
        thread outlives it."""
        for running in self._calls.values():
            running.stop.stop()
        box, self.toolbox = self.toolbox, None
        if box is not None:
            box.close()
        self._background.shutdown(timeout=10)


def _failed(step: ToolStep, why: str) -> ToolStep:
    return ToolStep(step.call, StepState.FAILED, why, step.server)
