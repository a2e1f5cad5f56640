"""The chat room's state for its widgets: the conversations, the reply in flight, the model.

:class:`ChatViewModel` is the one object the chat widgets render. It owns a
:class:`~app.chat.turn.ChatSession` and the :class:`~ui.chat.inference_bridge.InferenceBridge`'s
events, and tells the views what changed through signals. Its parts each have a room:

* the conversations, which one is open and the person's edits to them: the base class,
  :class:`~ui.chat.conversation_room.ConversationRoom`;
* the model (which answers, the worker's start, the load, a crash):
  :class:`~ui.chat.model_lifecycle.ModelLifecycle`, whose state the chat shows as its own
  (``chat.state``, ``chat.model_name``), so a widget reads one object;
* the conversation's tool servers and calls: :class:`~ui.chat.chat_tools.ChatTools`;
* the reply's tokens, handed to the views a frame or two at a time:
  :class:`~ui.chat.token_coalescer.TokenCoalescer`.

What stays here is the reply flow (send, regenerate, edit, stop, and the events that end
a reply) and the problems the person sees, since a model's failure and a reply's failure
share one card and one Try again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Generic, TypeVar, overload

from PySide6.QtCore import QObject, Signal

from app.chat.turn import ChatSession, PendingReply
from app.db import DatabaseError
from app.docs.embedder import Embedder
from app.docs.shelf import Shelf
from app.docs.store import DocumentStore
from app.inference import protocol as p
from app.inference.client import WorkerError
from app.workspace import Workspace
from ui.chat.chat_docs import ChatDocs
from ui.chat.chat_tools import ChatTools
from ui.chat.conversation_room import ConversationRoom
from ui.chat.inference_bridge import InferenceBridge
from ui.chat.model_lifecycle import ModelLifecycle, ModelState
from ui.chat.problems import Problem, ProblemAction
from ui.chat.token_coalescer import TokenCoalescer

__all__ = ["ChatViewModel", "ModelState", "Problem", "ProblemAction"]

log = logging.getLogger("hearth.chat")
T = TypeVar("T")


class _OfTheModel(Generic[T]):
    """An attribute the chat shows that its :class:`ModelLifecycle` holds: the widgets
    (and tests) keep reading and setting ``chat.state``, and the value has one owner."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, chat: None, owner: type) -> _OfTheModel[T]: ...
    @overload
    def __get__(self, chat: ChatViewModel, owner: type) -> T: ...
    def __get__(self, chat: ChatViewModel | None, owner: type) -> T | _OfTheModel[T]:
        return self if chat is None else getattr(chat.lifecycle, self.name)

    def __set__(self, chat: ChatViewModel, value: T) -> None:
        setattr(chat.lifecycle, self.name, value)


class ChatViewModel(ConversationRoom):
    reply_started = Signal(object)             # PendingReply
    reply_chunk = Signal(str, str, int)        # request id, text, tokens in it
    context_trimmed = Signal(str, int, int)    # request id, messages dropped, n_ctx
    reply_finished = Signal(object)            # PendingReply (saved or not)
    reply_stopping = Signal(object)            # PendingReply asked to stop; ends soon
    model_state_changed = Signal()
    problem_changed = Signal()                 # .problem set or cleared
    sampling_changed = Signal()
    versions_changed = Signal(str, str)        # base, its active version (chosen in chat)

    model_name = _OfTheModel[str | None]()     # chosen (loaded, loading or to load)
    state = _OfTheModel[ModelState]()
    progress = _OfTheModel[float]()
    loaded = _OfTheModel[p.Loaded | None]()
    adapter = _OfTheModel[str | None]()        # the live adapter on the loaded base
    notice = _OfTheModel[str]()                # how the model runs, said once

    def __init__(self, workspace: Workspace, bridge: InferenceBridge,
                 parent: QObject | None = None) -> None:
        super().__init__(workspace.store, parent)
        self.workspace = workspace
        self.bridge = bridge
        self.client = bridge.client
        self.session = ChatSession(workspace.store, bridge.client)
        self.lifecycle = ModelLifecycle(workspace, bridge.client, self)
        self.lifecycle.changed.connect(self.model_state_changed)
        self.lifecycle.versions_changed.connect(self.versions_changed)
        self.lifecycle.problem.connect(self._set_problem)
        self.problem: Problem | None = None
        self.reply: PendingReply | None = None  # at most one reply in flight
        self._stop_asked: str | None = None     # the request id Stop was pressed for
        self.waiting = ""  # what a reply with no request yet waits for, in words
        self.reply_tokens = 0
        self._chunks = TokenCoalescer(self)
        self._chunks.flushed.connect(self._on_chunk)
        self._closing = False
        # The conversation whose reply a worker crash cut off: offered Retry once the
        # model is back.
        self._unanswered: int | None = None
        bridge.event.connect(self._on_event)
        # Before any view hears of it: a Try again offered in one conversation is not
        # offered in the next.
        self.conversation_opened.connect(self._drop_retry)
        self.tools = ChatTools(self)  # the conversation's MCP servers and calls
        self.docs = ChatDocs(self, Shelf(  # the collections it answers from
            DocumentStore(workspace.library.conn), lambda: Embedder.for_home(workspace.home)))

    # ------------------------------------------------------------ conversations

    def delete(self, conversation_id: int) -> None:
        if self.reply is not None and self.reply.conversation_id == conversation_id:
            self._stop_reply()
            # The reply lands nowhere: forget it so it is not saved into a deleted row.
            reply = self.reply
            self.session.pending.pop(reply.request_id, None)
            self._end_reply(reply)
            self.reply_finished.emit(reply)  # views and the composer leave "busy"
        super().delete(conversation_id)

    def _change_shown(self, change: Callable[[], object]) -> None:
        if self.reply is not None and self.reply.conversation_id == self.conversation_id:
            return  # the prompt of the reply in flight must not change under it
        super()._change_shown(change)

    # ------------------------------------------------------------------ sampling

    @property
    def sampling(self) -> p.SamplingParams:
        return self.workspace.settings.sampling_for(self.model_name or "")

    def set_sampling(self, sampling: p.SamplingParams) -> None:
        """Remember ``sampling`` for the current model (per-model, as people expect)."""
        self.workspace.settings.remember_sampling(self.model_name or "", sampling)
        self.workspace.save_settings()
        self.sampling_changed.emit()

    # ------------------------------------------------------------------- replies

    @property
    def busy(self) -> bool:
        """A reply is under way: streaming, or the open conversation's calls running."""
        return self.reply is not None or self.tools.calls_running(self.conversation_id)

    @property
    def can_send(self) -> bool:
        return self.state == ModelState.READY and not self.busy

    def send(self, text: str) -> PendingReply | None:
        """Store the person's message and ask for a reply; the message shows at once,
        also when the tools' start or the documents' search comes first."""
        text = text.strip()
        if not text or not self.can_send:
            return None
        if self.conversation_id is None:
            self.new_conversation()
        cid = self.conversation_id
        assert cid is not None
        return self._start(lambda s: self.session.follow_up(cid, s), question=text,
                           say=lambda: self.session.say(cid, text))

    def regenerate(self) -> PendingReply | None:
        if not self.can_send or not self.messages():
            return None
        cid = self.conversation_id
        asked = [m.content for m in self.messages() if m.role == "user"]
        return self._start(lambda s: self.session.regenerate(cid, s),
                           question=asked[-1] if asked else None)

    def continue_reply(self) -> PendingReply | None:
        if not self.can_send:
            return None
        cid = self.conversation_id
        return self._start(lambda s: self.session.continue_reply(cid, s))

    def edit_and_resend(self, message_id: int, text: str) -> PendingReply | None:
        if not self.can_send or not text.strip():
            return None
        cid = self.conversation_id
        assert cid is not None
        return self._start(lambda s: self.session.follow_up(cid, s), question=text.strip(),
                           say=lambda: self.session.edit(cid, message_id, text))

    def follow_up(self, conversation_id: int) -> PendingReply | None:
        """Ask the model to go on after a reply's calls were decided (ChatTools); None
        while it cannot answer yet (another reply, or no model)."""
        if not self.can_send:
            return None
        return self._start(lambda s: self.session.follow_up(conversation_id, s),
                           conversation_id)

    @property
    def stopping(self) -> bool:
        """Stop was asked for the reply in flight, which has not ended yet."""
        return self.reply is not None and self._stop_asked == self.reply.request_id

    def stop(self) -> None:
        """The person's Stop (its button, Esc): the reply in flight ends, and so do the
        open conversation's running tool calls; the conversation then waits for them."""
        if self.conversation_id is not None:
            self.tools.stop_calls(self.conversation_id)
        self._stop_reply()

    def _stop_reply(self) -> None:
        """Ask the worker to end the reply; the views say "Stopping…" at once, since the
        worker ends it only at its next token or prompt chunk."""
        reply = self.reply
        if reply is None:
            return
        if not reply.request_id:  # held (tools starting, a search): nothing was asked
            self._end_reply(reply)
            self.reply_finished.emit(reply)
            return
        if not self.stopping:
            self._stop_asked = reply.request_id
            self.reply_stopping.emit(reply)
        try:
            self.session.cancel(reply)
        except WorkerError as exc:
            log.info("could not cancel: %s", exc)

    def unload(self) -> None:
        """Free the model's memory (a fine-tune needs it); load_model() brings it back."""
        self._stop_reply()
        self.lifecycle.unload()

    def _start(self, ask: Any, conversation_id: int | None = None,
               question: str | None = None, say: Callable[[], object] | None = None
               ) -> PendingReply | None:
        """Ask for a reply; first, off the GUI thread, the search for ``question`` (the
        person's message it answers) where the conversation uses documents, and the
        start of its tool servers where it uses tools. ``say`` stores the person's
        message before anything else, so it shows while those run."""
        cid = self.conversation_id if conversation_id is None else conversation_id
        if say is not None:
            try:
                say()
            except DatabaseError as exc:
                self._set_problem(Problem(f"Your message was not sent: {exc}.",
                                          ProblemAction.NONE, self.conversation_id))
                return None
        if cid is not None and question is not None and self.docs.must_search(cid, question):
            return self._hold(cid, ask, question, "Searching your documents…",
                              lambda release, failed: self.docs.search(
                                  cid, question, release, failed))
        if cid is not None and self.tools.must_start(cid):
            return self._hold(cid, ask, question, "Starting this conversation's tools…",
                              lambda release, _failed: self.tools.start(cid, release))
        if cid is not None:
            self.tools.offer(cid)
            self.docs.offer(cid)
        sampling = self.sampling
        if self._problem_is_retry():
            self._set_problem(None)
        try:
            reply = ask(sampling)
        except WorkerError as exc:
            self._set_problem(Problem(str(exc), ProblemAction.RELOAD, self.conversation_id))
            self.messages_changed.emit(self.conversation_id or -1)
            return None
        except DatabaseError as exc:  # the conversation could not be read: nothing was asked
            self._set_problem(Problem(f"Your message was not sent: {exc}.", ProblemAction.NONE,
                                      self.conversation_id))
            return None
        self.reply = reply
        self.reply_tokens = 0
        if self.conversation_id is not None:
            # Remember what the conversation was last run with (exports carry it).
            conversation = self.store.get(reply.conversation_id)
            settings = dict(conversation.settings, sampling=asdict(sampling))
            self.store.update(reply.conversation_id, settings=settings,
                              model=self.model_name)
        self.conversations_changed.emit()
        self.messages_changed.emit(reply.conversation_id)
        self.reply_started.emit(reply)
        return reply

    def _hold(self, conversation_id: int, ask: Any, question: str | None, waiting: str,
              prepare: Callable[[Callable[[], None], Callable[[BaseException], None]], None]
              ) -> PendingReply:
        """Something slow comes first (the documents' search, the tool servers' start:
        seconds, off the GUI thread): the reply shows as under way (no request yet,
        ``waiting`` saying why) and is asked for once it is done; if it fails, the person
        is told and nothing is asked."""
        held = PendingReply(conversation_id, "")
        self.reply, self.reply_tokens, self.waiting = held, 0, waiting
        self.conversations_changed.emit()  # a first message named the conversation
        self.reply_started.emit(held)

        def release() -> None:
            if self.reply is held:  # not stopped meanwhile
                self.reply = None
                self._start(ask, conversation_id, question)

        def failed(exc: BaseException) -> None:
            if self.reply is held:
                self._end_reply(held)
                self.reply_finished.emit(held)
                self._set_problem(Problem(f"Your documents could not be searched: {exc}",
                                          ProblemAction.NONE, conversation_id))

        prepare(release, failed)
        return held

    def _drop_retry(self, _conversation_id: int) -> None:
        if self.problem is not None and self.problem.action == ProblemAction.RETRY:
            self._set_problem(None)

    def _problem_is_retry(self) -> bool:
        return self.problem is not None and self.problem.action in (ProblemAction.RETRY,
                                                                    ProblemAction.NONE)

    def _end_reply(self, reply: PendingReply) -> None:
        self._chunks.flush()
        if self.reply is reply:
            self.reply = None

    # ---------------------------------------------------------------- the model

    def start(self) -> None:
        """Start the worker and load the chosen model, without blocking the window."""
        self.lifecycle.launch(restart=False)

    def reload(self) -> None:
        """Restart the worker (after a crash) or reload with new load settings."""
        self.lifecycle.launch(restart=True)

    def model_for(self, name: str) -> str:
        return self.lifecycle.model_for(name)

    def choose_model(self, name: str) -> None:
        """The person chose ``name``: load what answers for it (see ModelLifecycle.choose)."""
        answering = self.lifecycle.choose(name)
        if answering is not None:
            self.load_model(answering)

    def load_model(self, name: str) -> None:
        """Load ``name``; a reply in flight is stopped first (it belongs to the old one)."""
        if self.lifecycle.select(name):
            self.sampling_changed.emit()  # sampling is remembered per model
            self._stop_reply()
            self.lifecycle.load()

    def _set_problem(self, problem: Problem | None) -> None:
        if problem != self.problem:
            self.problem = problem
            self.problem_changed.emit()

    def retry(self) -> None:
        """Answer a Problem's button."""
        problem = self.problem
        if problem is None:
            return
        if problem.action == ProblemAction.RELOAD:
            self.reload()
        else:
            self._set_problem(None)
            self.regenerate()

    def shutdown(self) -> None:
        """Stop the worker; called when the window closes (no process outlives it)."""
        self._closing = True
        self._chunks.stop()
        self.lifecycle.shutdown()
        self.tools.shutdown()
        self.docs.shutdown()
        self.bridge.shutdown()

    # ------------------------------------------------------------------- events

    def _on_event(self, event: object) -> None:
        if self._closing:
            return
        if isinstance(event, p.Tokens):
            if self.reply is not None and event.request_id == self.reply.request_id:
                self._chunks.add(event.text, event.n_tokens)
            self.session.handle(event)
            return
        if isinstance(event, p.Loaded | p.AdapterSet):
            self.session.producer = {"model": self.model_name}
        if isinstance(event, p.WorkerDied) and self.reply is not None:
            self._unanswered = self.reply.conversation_id
        self.lifecycle.handle(event)
        if isinstance(event, p.Loaded):
            if self.problem is not None and self.problem.action == ProblemAction.RELOAD:
                self._set_problem(None)
            self._offer_retry_after_crash()
        elif isinstance(event, p.WorkerDied):
            self._set_problem(Problem(event.message, ProblemAction.RELOAD, self.conversation_id,
                                      "\n".join(event.last_log_lines)))
        elif isinstance(event, p.ContextTrimmed):
            self.context_trimmed.emit(event.request_id, event.dropped_messages, event.n_ctx)
        try:
            finished = self.session.handle(event)
        except DatabaseError as exc:
            self._not_saved(exc)
            return
        self._finish(finished, event)

    def _not_saved(self, exc: DatabaseError) -> None:
        """The reply ended but could not be stored (another program holds hearth.db):
        the room leaves "busy" and says so, with Try again to ask for it anew."""
        reply = self.reply
        if reply is None or reply.request_id in self.session.pending:
            log.error("a conversation change was not saved: %s", exc)
            return
        self._end_reply(reply)
        reply.error = str(exc)
        self._set_problem(Problem(f"The reply could not be saved: {exc}.", ProblemAction.RETRY,
                                  reply.conversation_id))
        self.reply_finished.emit(reply)

    def _offer_retry_after_crash(self) -> None:
        conversation_id, self._unanswered = self._unanswered, None
        if conversation_id is not None and conversation_id == self.conversation_id:
            self._set_problem(Problem("The model is running again. Your last message has no "
                                      "complete answer yet.", ProblemAction.RETRY, conversation_id))

    def _finish(self, finished: PendingReply | None, event: object) -> None:
        if finished is None:
            return
        self._end_reply(finished)
        if finished.error and isinstance(event, p.Error):
            action = (ProblemAction.RELOAD if event.error_kind in ("no_model", "out_of_memory")
                      else ProblemAction.RETRY)
            text = finished.error
            if event.error_kind == "out_of_memory":
                text = ("The model ran out of memory while answering. Load it with a "
                        "shorter context or fewer GPU layers, then try again.")
            self._set_problem(Problem(text, action, finished.conversation_id))
        # Views re-read the conversation on reply_finished (no second messages_changed).
        self.reply_finished.emit(finished)
        self.conversations_changed.emit()

    def _on_chunk(self, text: str, tokens: int) -> None:
        if self.reply is not None:
            self.reply_tokens += tokens
            self.reply_chunk.emit(self.reply.request_id, text, tokens)
