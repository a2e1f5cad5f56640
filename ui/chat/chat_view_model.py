"""The chat room's state: open conversation, the reply in flight, the model's state.

:class:`ChatViewModel` is the one object the chat widgets render. It owns a
:class:`~app.chat.turn.ChatSession` and the :class:`~ui.chat.inference_bridge.InferenceBridge`'s
events, and tells the views what changed through signals. Two habits of DESIGN.md
live here:

* Tokens are coalesced. Each ``Tokens`` event is appended to a per-reply buffer and a
  40 ms timer flushes the buffers as one ``reply_chunk`` signal, so a view does one
  append per frame or two however fast the worker runs.
* Slow work stays off the GUI thread: starting the worker process (and restarting it
  after a crash) runs on a short-lived thread; the model loads in the worker.

A fine-tuned model is served as its base plus a live adapter when it can be
(:func:`app.models.live.plan_load`): switching between them is then an adapter switch.

The module is long because this object is the one owner of the room's state (the open
conversation, the reply in flight, the model and its adapter); the policies it applies
live in ``app`` (the session, the load plan), so what is left here is the wiring.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.chat.conversations import Conversation, Message, UnknownConversation
from app.chat.export import write_export
from app.chat.turn import DEFAULT_TITLE, ChatSession, PendingReply
from app.db import DatabaseError
from app.inference import protocol as p
from app.inference.client import WorkerError
from app.models.library import LibraryError, UnknownModel
from app.models.live import plan_load
from app.models.versions import ActiveVersions, chat_model
from app.workspace import Workspace
from ui.background import Background
from ui.chat.chat_tools import ChatTools
from ui.chat.inference_bridge import InferenceBridge

log = logging.getLogger("hearth.chat")
FLUSH_MS = 40

class ModelState(StrEnum):
    """Where the chat's model stands, as the model bar shows it."""

    STOPPED = "stopped"
    STARTING = "starting"
    """The worker process is starting."""
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    """The worker did not start, or the model did not load."""
    CRASHED = "crashed"
    """The worker died while the model was loaded."""


class ProblemAction(StrEnum):
    """What the problem card's button does."""

    NONE = ""
    """No button: the text says what to do."""
    RELOAD = "reload"
    """Restart the worker and load the model."""
    RETRY = "retry"
    """Ask for the reply again."""


@dataclass
class Problem:
    """Something the person must know and can act on, shown in the conversation."""

    text: str
    action: ProblemAction
    conversation_id: int | None = None
    details: str = ""


class ChatViewModel(QObject):
    conversations_changed = Signal()
    conversation_opened = Signal(int)          # id, or -1 when none is open
    messages_changed = Signal(int)             # a conversation's stored messages changed
    reply_started = Signal(object)             # PendingReply
    reply_chunk = Signal(str, str, int)        # request id, text, tokens in it
    context_trimmed = Signal(str, int, int)    # request id, messages dropped, n_ctx
    reply_finished = Signal(object)            # PendingReply (saved or not)
    reply_stopping = Signal(object)            # PendingReply asked to stop; ends soon
    model_state_changed = Signal()
    problem_changed = Signal()                 # .problem set or cleared
    sampling_changed = Signal()
    versions_changed = Signal(str, str)        # base, its active version (chosen in chat)

    def __init__(self, workspace: Workspace, bridge: InferenceBridge,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.store = workspace.store
        self.bridge = bridge
        self.client = bridge.client
        self.session = ChatSession(workspace.store, bridge.client)
        self.conversation_id: int | None = None
        self.model_name: str | None = None      # chosen (loaded, loading or to load)
        self.state = ModelState.STOPPED
        self.progress = 0.0
        self.loaded: p.Loaded | None = None
        # The adapter applied to the loaded base ("" or None: none), and one asked for
        # and not yet applied; see app.models.live.
        self.adapter: str | None = None
        self._pending_adapter: str | None = None
        self._live_ok = True
        self.problem: Problem | None = None
        self.reply: PendingReply | None = None  # at most one reply in flight
        self._stop_asked: str | None = None     # the request id Stop was pressed for
        self.reply_tokens = 0
        self._buffer: list[str] = []
        self._buffer_tokens = 0
        self._flush = QTimer(self, interval=FLUSH_MS, singleShot=True)
        self._flush.timeout.connect(self._on_flush)
        self._starter = Background(self)  # starts the worker process off the GUI thread
        self._closing = False
        # A line about how the model runs that the person should see once (the kernel
        # fallback); plain text, shown in the model bar.
        self.notice = ""
        # The conversation whose reply a worker crash cut off: offered Retry once the
        # model is back.
        self._unanswered: int | None = None
        bridge.event.connect(self._on_event)
        default = workspace.library.default()
        self.model_name = self.model_for(default.name) if default else None
        self.tools = ChatTools(self)  # the conversation's MCP servers and calls

    # ------------------------------------------------------------ conversations

    @property
    def conversation(self) -> Conversation | None:
        if self.conversation_id is None:
            return None
        try:
            return self.store.get(self.conversation_id)
        except UnknownConversation:
            return None

    def messages(self) -> list[Message]:
        return self.store.messages(self.conversation_id) if self.conversation_id else []

    def new_conversation(self) -> int:
        """Open a fresh conversation, reusing the open one if it is still empty."""
        current = self.conversation
        if current is not None and not self.messages() and current.title == DEFAULT_TITLE:
            return current.id
        conversation = self.store.create(model=self.model_name)
        self.conversations_changed.emit()
        self.open_conversation(conversation.id)
        return conversation.id

    def open_conversation(self, conversation_id: int | None) -> None:
        if conversation_id is not None:
            try:
                self.store.get(conversation_id)
            except UnknownConversation:
                conversation_id = None
        if conversation_id == self.conversation_id:
            return
        self.conversation_id = conversation_id
        if self.problem is not None and self.problem.action == ProblemAction.RETRY:
            self._set_problem(None)
        self.conversation_opened.emit(-1 if conversation_id is None else conversation_id)

    def rename(self, conversation_id: int, title: str) -> None:
        title = " ".join(title.split())
        if title:
            self.store.update(conversation_id, title=title)
            self.conversations_changed.emit()

    def delete(self, conversation_id: int) -> None:
        if self.reply is not None and self.reply.conversation_id == conversation_id:
            self.stop()
            # The reply lands nowhere: forget it so it is not saved into a deleted row.
            reply = self.reply
            self.session.pending.pop(reply.request_id, None)
            self._end_reply(reply)
            self.reply_finished.emit(reply)  # views and the composer leave "busy"
        self.store.delete(conversation_id)
        if conversation_id == self.conversation_id:
            remaining = self.store.list()
            self.conversation_id = None
            self.open_conversation(remaining[0].id if remaining else None)
            if self.conversation_id is None:
                self.conversation_opened.emit(-1)
        self.conversations_changed.emit()

    def set_system_prompt(self, text: str) -> None:
        conversation = self.conversation
        if conversation is not None and conversation.system_prompt != text:
            self.store.update(conversation.id, system_prompt=text)

    def export(self, conversation_id: int, path: str | Path) -> Path:
        return write_export(path, self.store.get(conversation_id),
                            self.store.messages(conversation_id))

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
        return self.reply is not None

    @property
    def can_send(self) -> bool:
        return self.state == ModelState.READY and self.reply is None

    def send(self, text: str) -> PendingReply | None:
        text = text.strip()
        if not text or not self.can_send:
            return None
        if self.conversation_id is None:
            self.new_conversation()
        assert self.conversation_id is not None
        return self._start(lambda s: self.session.send(self.conversation_id, text, s))

    def regenerate(self) -> PendingReply | None:
        if not self.can_send or not self.messages():
            return None
        cid = self.conversation_id
        return self._start(lambda s: self.session.regenerate(cid, s))

    def continue_reply(self) -> PendingReply | None:
        if not self.can_send:
            return None
        cid = self.conversation_id
        return self._start(lambda s: self.session.continue_reply(cid, s))

    def edit_and_resend(self, message_id: int, text: str) -> PendingReply | None:
        if not self.can_send or not text.strip():
            return None
        cid = self.conversation_id
        return self._start(lambda s: self.session.edit_and_resend(cid, message_id, text, s))

    def follow_up(self, conversation_id: int) -> PendingReply | None:
        """Ask the model to go on after a reply's calls were decided (ChatTools); None
        while it cannot answer yet (another reply, or no model)."""
        if not self.can_send:
            return None
        return self._start(lambda s: self.session.follow_up(conversation_id, s),
                           conversation_id)

    def select_version(self, message_id: int, index: int) -> None:
        if self.reply is not None and self.reply.conversation_id == self.conversation_id:
            return  # the prompt of the reply in flight must not change under it
        self.store.select_version(message_id, index)
        if self.conversation_id is not None:
            self.messages_changed.emit(self.conversation_id)

    # ---------------------------------------------------------------- branches

    def select_branch(self, message_id: int, index: int) -> None:
        """Show another branch beside ``message_id`` (what the model sees follows it)."""
        self._change_branch(lambda: self.store.select_branch(message_id, index))

    def branch_from(self, message_id: int) -> None:
        """End the shown branch at ``message_id``: the next message starts a new one."""
        self._change_branch(lambda: self.store.branch_from(message_id))

    def show_later(self, message_id: int) -> None:
        self._change_branch(lambda: self.store.show_later(message_id))

    def _change_branch(self, change: Any) -> None:
        if self.reply is not None and self.reply.conversation_id == self.conversation_id:
            return  # the prompt of the reply in flight must not change under it
        change()
        if self.conversation_id is not None:
            self.messages_changed.emit(self.conversation_id)

    @property
    def stopping(self) -> bool:
        """Stop was asked for the reply in flight, which has not ended yet."""
        return self.reply is not None and self._stop_asked == self.reply.request_id

    def stop(self) -> None:
        """Ask the worker to end the reply; the views say "Stopping…" at once, since the
        worker ends it only at its next token or prompt chunk."""
        reply = self.reply
        if reply is None:
            return
        if not reply.request_id:  # waiting for the tools to start: nothing was asked
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
        self.stop()
        self.loaded = None
        if self.client.alive:
            try:
                self.client.unload()
            except WorkerError as exc:
                log.info("could not unload: %s", exc)
        self._set_state(ModelState.STOPPED)

    def _start(self, ask: Any, conversation_id: int | None = None) -> PendingReply | None:
        cid = self.conversation_id if conversation_id is None else conversation_id
        if cid is not None and self.tools.must_start(cid):
            return self._hold(cid, ask)
        if cid is not None:
            self.tools.offer(cid)
        sampling = self.sampling
        if self._problem_is_retry():
            self._set_problem(None)
        try:
            reply = ask(sampling)
        except WorkerError as exc:
            self._set_problem(Problem(str(exc), ProblemAction.RELOAD, self.conversation_id))
            self.messages_changed.emit(self.conversation_id or -1)
            return None
        except DatabaseError as exc:  # the message could not be stored: nothing was asked
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

    def _hold(self, conversation_id: int, ask: Any) -> PendingReply:
        """The conversation's tool servers start first (seconds, off the GUI thread): the
        reply shows as under way (no request yet) and is asked for once they run."""
        held = PendingReply(conversation_id, "")
        self.reply, self.reply_tokens = held, 0
        self.reply_started.emit(held)

        def release() -> None:
            if self.reply is held:  # not stopped meanwhile
                self.reply = None
                self._start(ask, conversation_id)

        self.tools.start(conversation_id, release)
        return held

    def _problem_is_retry(self) -> bool:
        return self.problem is not None and self.problem.action in (ProblemAction.RETRY,
                                                                    ProblemAction.NONE)

    def _end_reply(self, reply: PendingReply) -> None:
        self._on_flush()
        if self.reply is reply:
            self.reply = None

    # ---------------------------------------------------------------- the model

    def start(self) -> None:
        """Start the worker and load the chosen model, without blocking the window."""
        self._launch(restart=False)

    def model_for(self, name: str) -> str:
        """The model that answers for ``name``'s base now: its active taught version, or
        the base itself (as ``hearth chat`` picks). The default model may be a version
        the person rolled back from: its base decides, not the version."""
        versions = ActiveVersions(self.workspace.home)
        try:
            base = self.workspace.library.get(versions.base_of(name) or name)
        except UnknownModel:  # a merged version outlives its base
            return name
        return chat_model(self.workspace.library, versions, base).name

    def choose_model(self, name: str) -> None:
        """The person chose ``name`` (the picker, "Chat with it"): a base loads its
        active version; a version chosen by name becomes the active one of its base, so
        the picker and the Teach panel's version list always name the same model."""
        versions = ActiveVersions(self.workspace.home)
        base = versions.base_of(name)
        if base is not None and versions.active(base) != name:
            versions.activate(base, name)
            self.versions_changed.emit(base, name)
        elif base is None:
            name = self.model_for(name)
        if name == self.model_name and self.state in (ModelState.READY, ModelState.LOADING):
            self.model_state_changed.emit()  # the picker shows what answers
            return
        self.load_model(name)

    def load_model(self, name: str) -> None:
        try:
            self.workspace.library.get(name)
        except UnknownModel as exc:
            self._set_problem(Problem(str(exc), ProblemAction.RELOAD))
            return
        self.model_name = name
        self.sampling_changed.emit()
        if self.reply is not None:
            self.stop()
        if self.client.alive and not self._starter.busy:
            self._load()
        else:
            self._launch(restart=False)

    def reload(self) -> None:
        """Restart the worker (after a crash) or reload with new load settings."""
        self._launch(restart=True)

    def _launch(self, restart: bool) -> None:
        if self._starter.busy:
            return
        self._set_state(ModelState.STARTING)
        self._set_problem(None)
        # Process start-up takes a second or more; whatever goes wrong there (not only a
        # WorkerError) becomes the "did not start" problem with its Reload button.
        self._starter.run(self.client.restart if restart else self.client.start,
                          lambda _r: self._on_worker_started(),
                          lambda exc: self._on_worker_start_failed(str(exc)),
                          name="worker-start")

    def _load(self) -> None:
        """Ask the worker to load; progress and the result come back as events."""
        if self.model_name is None:
            self.state = ModelState.STOPPED
            self.model_state_changed.emit()
            return
        record = self.workspace.library.get(self.model_name)
        loaded = (self.loaded.path if self.loaded is not None
                  and self.state == ModelState.READY else None)
        try:
            plan = plan_load(record, self.workspace.library, loaded, self._live_ok)
        except LibraryError as exc:
            self._set_state(ModelState.FAILED)
            self._set_problem(Problem(str(exc), ProblemAction.RELOAD))
            return
        self._pending_adapter = plan.adapter if not plan.switch_only else plan.adapter or ""
        if plan.switch_only:  # the base is loaded already: milliseconds, no reload
            self._set_state(ModelState.LOADING)
            self.client.set_adapter(plan.adapter)
            return
        load = self.workspace.settings.load
        self.state, self.progress, self.loaded = ModelState.LOADING, 0.0, None
        self.model_state_changed.emit()
        self.client.load(plan.path, n_ctx=load.n_ctx, n_gpu_layers=load.n_gpu_layers,
                         n_threads=load.n_threads, flash_attn=load.flash_attn,
                         template=self.workspace.settings.template_for(record.name),
                         cache_type=load.cache_type, prompt_lookup=load.prompt_lookup)
        if plan.adapter is not None:
            self.client.set_adapter(plan.adapter)

    def _is_live_only(self) -> bool:
        try:
            record = self.workspace.library.get(self.model_name or "")
        except UnknownModel:
            return False
        return record.live_only

    def _on_worker_started(self) -> None:
        if not self._closing:
            self._load()

    def _on_worker_start_failed(self, message: str) -> None:
        self._set_state(ModelState.FAILED)
        self._set_problem(Problem(f"The model worker did not start. {message}",
                                  ProblemAction.RELOAD, details=message))

    def _set_state(self, state: ModelState) -> None:
        self.state = state
        self.model_state_changed.emit()

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
        self._flush.stop()
        self._starter.shutdown(timeout=30)
        self.tools.shutdown()
        self.bridge.shutdown()

    # ------------------------------------------------------------------- events

    def _on_event(self, event: object) -> None:
        if self._closing:
            return
        if isinstance(event, p.Tokens):
            if self.reply is not None and event.request_id == self.reply.request_id:
                self._buffer.append(event.text)
                self._buffer_tokens += event.n_tokens
                if not self._flush.isActive():
                    self._flush.start()
            self.session.handle(event)
            return
        if isinstance(event, p.LoadProgress):
            self.progress = event.fraction
            self.model_state_changed.emit()
        elif isinstance(event, p.Loaded):
            self.loaded = event
            self.adapter = None
            self.session.producer = {"model": self.model_name}
            if self._pending_adapter is None:  # else ready once the adapter is applied
                self.state = ModelState.READY
            self.model_state_changed.emit()
            if self.problem is not None and self.problem.action == ProblemAction.RELOAD:
                self._set_problem(None)
            self._offer_retry_after_crash()
        elif isinstance(event, p.AdapterSet):
            self._pending_adapter = None
            self.adapter = event.path
            self.session.producer = {"model": self.model_name}
            self._set_state(ModelState.READY)
        elif isinstance(event, p.Error) and event.error_kind == "adapter_failed":
            if self._is_live_only():  # nothing else to load
                self._pending_adapter = None
                self._set_state(ModelState.FAILED)
                self._set_problem(Problem(f"The adapter could not be applied: "
                                          f"{event.message}", ProblemAction.RELOAD))
                return
            # The adapter does not fit after all: load the merged model instead.
            log.warning("live adapter refused, loading the merged model: %s", event.message)
            self._pending_adapter, self._live_ok = None, False
            self._load()
            self._live_ok = True
        elif isinstance(event, p.KernelFallback):
            self.notice = event.message
            self.model_state_changed.emit()
        elif isinstance(event, p.ContextTrimmed):
            self.context_trimmed.emit(event.request_id, event.dropped_messages, event.n_ctx)
        elif isinstance(event, p.WorkerDied):
            self.loaded = None
            if self.reply is not None:
                self._unanswered = self.reply.conversation_id
            self._set_state(ModelState.CRASHED)
            self._set_problem(Problem(event.message, ProblemAction.RELOAD, self.conversation_id,
                                      "\n".join(event.last_log_lines)))
        elif isinstance(event, p.Error) and event.request_id is None:
            if event.error_kind == "load_failed" or self.state == ModelState.LOADING:
                self.loaded = None
                self._set_state(ModelState.FAILED)
                self._set_problem(Problem(f"The model could not be loaded: {event.message}",
                                          ProblemAction.RELOAD))
            else:
                log.warning("worker error: %s", event.message)
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

    def _on_flush(self) -> None:
        if not self._buffer or self.reply is None:
            self._buffer.clear()
            self._buffer_tokens = 0
            return
        text, tokens = "".join(self._buffer), self._buffer_tokens
        self._buffer.clear()
        self._buffer_tokens = 0
        self.reply_tokens += tokens
        self.reply_chunk.emit(self.reply.request_id, text, tokens)
