"""A conversation turn, from the person's message to the stored reply.

:class:`ChatSession` ties the conversation store to the inference client: it saves the
user message, sends the conversation to the worker, follows that reply's events, and
stores the reply when it ends — complete, cancelled, truncated, or cut short by a
worker error or crash, always with whatever text was produced. The CLI drives it with a
blocking loop; the GUI feeds it events from the Qt adapter. It never blocks itself.

With tools offered (:attr:`ChatSession.tools`), a reply that is a call is stored with its
steps pending (:mod:`app.chat.tool_steps`); the owner asks the person, runs the allowed
calls, stores the outcome with :meth:`ChatSession.resolve`, and asks the model to go on
with :meth:`ChatSession.follow_up`: at most :attr:`ToolOffer.max_rounds` calls in a row,
after which the model is asked to answer without tools.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from app.chat.conversations import (
    CANCELLED,
    COMPLETE,
    INTERRUPTED,
    TRUNCATED,
    ConversationStore,
    Message,
)
from app.chat.tool_steps import ToolStep
from app.chat.tools import (
    Tool,
    ToolChoice,
    auto_call_schema,
    call_schema,
    read_calls,
    tools_json,
)
from app.docs.citing import Grounding, Retriever
from app.inference import protocol as p
from app.inference.client import InferenceClient

_STATUS_BY_FINISH = {"stop": COMPLETE, "cancelled": CANCELLED, "length": TRUNCATED,
                     "context_full": TRUNCATED}


@dataclass
class PendingReply:
    conversation_id: int
    request_id: str
    text: str = ""
    dropped_messages: int = 0
    # When continuing a truncated reply, the stored message being extended.
    continues: Message | None = None
    # When regenerating, the stored reply that gets this one as a new version.
    replaces: Message | None = None
    saved: Message | None = field(default=None)
    error: str | None = None
    # What answered: {"model": its library name}, stored in the reply's stats beside the
    # worker's own "adapter", so a conversation that switched base <-> tuned still says
    # which one wrote each reply.
    producer: dict[str, str] = field(default_factory=dict)
    # Answering from documents: the passages given with the question (stored with the
    # reply as its sources) and how many the search found.
    grounding: Grounding | None = None


DEFAULT_TITLE = "New chat"


@dataclass
class ToolOffer:
    """The tools a conversation may call now, and which server offers each."""

    tools: list[Tool]
    servers: dict[str, str] = field(default_factory=dict)
    max_rounds: int = 5
    """Calls in a row before the model must answer (the person sets it)."""
    required: bool = False
    """The turn's first reply must be a call (held to the tools' schemas by grammar);
    after it the model chooses. Small models rarely call unless made to."""

    def wire(self) -> str:
        return tools_json(self.tools)


def title_from(text: str, limit: int = 48) -> str:
    """A conversation title from its first message: the first line, cut at a word."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    if len(line) <= limit:
        return line or DEFAULT_TITLE
    cut = line[:limit].rsplit(" ", 1)[0] if " " in line[:limit] else line[:limit]
    return cut.rstrip(",.;:") + "…"


class ChatSession:
    def __init__(self, store: ConversationStore, client: InferenceClient) -> None:
        self.store = store
        self.client = client
        self.pending: dict[str, PendingReply] = {}
        # Who answers now; the owner updates it when the model or its adapter changes.
        self.producer: dict[str, str] = {}
        self.tools: ToolOffer | None = None
        # The conversation's collections, searched before each reply to a question.
        self.documents: Retriever | None = None

    def send(self, conversation_id: int, text: str,
             sampling: p.SamplingParams | None = None) -> PendingReply:
        """Store the person's message (:meth:`say`) and ask for a reply to the whole
        conversation."""
        self.say(conversation_id, text)
        return self._request(conversation_id, sampling)

    def say(self, conversation_id: int, text: str) -> Message:
        """Store the person's message without asking for a reply yet: the window shows it
        at once while something slow comes first (the tools' start, the documents'
        search), then asks with :meth:`follow_up`.

        A conversation still called "New chat" is named after its first message.
        """
        conversation = self.store.get(conversation_id)
        if conversation.title == DEFAULT_TITLE and not self.store.messages(conversation_id):
            self.store.update(conversation_id, title=title_from(text))
        return self.store.add_message(conversation_id, "user", text)

    def regenerate(self, conversation_id: int, sampling: p.SamplingParams | None = None
                   ) -> PendingReply:
        """Ask again for the last reply; the earlier one is kept as a version.

        When the conversation ends with the person's message (the last reply failed
        before writing anything), this simply asks for a reply.
        """
        messages = self.store.messages(conversation_id)
        if messages and messages[-1].role == "assistant":
            last = messages[-1]
            request_id, grounding = self._ask(conversation_id, sampling, messages[:-1],
                                              before=last.position)
            return self._track(PendingReply(conversation_id, request_id, replaces=last,
                                            grounding=grounding))
        if not messages:
            raise ValueError("there is nothing to reply to")
        return self._request(conversation_id, sampling)

    def edit_and_resend(self, conversation_id: int, message_id: int, text: str,
                        sampling: p.SamplingParams | None = None) -> PendingReply:
        """Send an edited copy of one of the person's messages and ask again from there.

        The edited message starts a new branch beside the old one; the old message and
        the turns that answered it stay, one ‹ › away (nothing is deleted).
        """
        self.edit(conversation_id, message_id, text)
        return self._request(conversation_id, sampling)

    def edit(self, conversation_id: int, message_id: int, text: str) -> None:
        """Store the edited copy (:meth:`edit_and_resend`) without asking yet, as
        :meth:`say` does for a new message."""
        message = self.store.message(message_id)
        if message.conversation_id != conversation_id or message.role != "user":
            raise ValueError("only your own messages can be edited")
        if not text.strip():
            raise ValueError("the message is empty")
        self.store.branch_beside(message_id, text)

    def continue_reply(self, conversation_id: int, sampling: p.SamplingParams | None = None
                       ) -> PendingReply:
        """Extend the last assistant reply, e.g. one cut by the token limit."""
        messages = self.store.messages(conversation_id)
        if not messages or messages[-1].role != "assistant":
            raise ValueError("there is no reply to continue")
        request_id = self.client.chat(self.store.prompt_messages(conversation_id), sampling,
                                      continue_last=True)
        return self._track(PendingReply(conversation_id, request_id,
                                         continues=messages[-1]))

    def cancel(self, reply: PendingReply) -> None:
        self.client.cancel(reply.request_id)

    def resolve(self, message_id: int, steps: list[ToolStep]) -> None:
        """Store what became of a reply's calls (run, failed or denied)."""
        self.store.set_tool_steps(message_id, steps)

    def follow_up(self, conversation_id: int, sampling: p.SamplingParams | None = None
                  ) -> PendingReply:
        """Ask the model to go on: after its calls' results, or after the person's
        message that :meth:`say` or :meth:`edit` stored."""
        return self._request(conversation_id, sampling)

    def _request(self, conversation_id: int, sampling: p.SamplingParams | None
                 ) -> PendingReply:
        request_id, grounding = self._ask(conversation_id, sampling,
                                          self.store.messages(conversation_id))
        return self._track(PendingReply(conversation_id, request_id, grounding=grounding))

    def _ask(self, conversation_id: int, sampling: p.SamplingParams | None,
             shown: list[Message], before: int | None = None
             ) -> tuple[str, Grounding | None]:
        """Send the conversation (up to ``before``) with the tools it may call now.

        ``shown`` are the messages the reply follows. After ``max_rounds`` calls in a row
        no tools are offered (the model must answer); with ``required``, a reply that
        starts a turn (no call just before it) is held to a call."""
        rounds = 0
        for message in reversed(shown):
            if message.role != "assistant" or not message.tool_steps:
                break
            rounds += 1
        offer = self.tools if self.tools is not None and self.tools.tools else None
        tools = offer.wire() if offer is not None and rounds < offer.max_rounds else ""
        if tools and offer is not None:
            sampling = self._held(offer, sampling, forced=offer.required and rounds == 0)
        messages = self.store.prompt_messages(conversation_id, before)
        grounding = self._ground(messages, sampling)
        return self.client.chat(messages, sampling, tools=tools), grounding

    @staticmethod
    def _held(offer: ToolOffer, sampling: p.SamplingParams | None, forced: bool
              ) -> p.SamplingParams:
        """A required call is held to the tools' schemas from the first token; a call
        the model begins by itself is held from there on (unless the person's own
        Structured output holds the whole reply). One call a reply either way: a small
        model held to a list repeats its call until the reply's end."""
        sampling = sampling or p.SamplingParams()
        if forced:
            return replace(sampling, json_schema=call_schema(
                offer.tools, ToolChoice("required"), parallel=False))
        if sampling.grammar or sampling.json_schema:
            return sampling
        return replace(sampling, call_schema=auto_call_schema(offer.tools, parallel=False))

    def _ground(self, messages: list[dict[str, str]], sampling: p.SamplingParams | None
                ) -> Grounding | None:
        """With documents on, the newest user turn becomes its question with the
        passages that fit (as data, in that turn: app.docs.citing). Only the turn being
        answered carries passages; earlier ones are sent as they were typed."""
        if self.documents is None or not messages or messages[-1]["role"] != "user":
            return None
        loaded = self.client.loaded
        n_ctx = loaded.n_ctx if loaded is not None else 4096
        grounding = self.documents.ground(messages[-1]["content"], n_ctx,
                                          (sampling or p.SamplingParams()).max_tokens)
        messages[-1] = {**messages[-1], "content": grounding.content}
        return grounding

    def _calls(self, reply: PendingReply, status: str) -> list[ToolStep]:
        """The reply's calls, when tools were offered and it made some."""
        if self.tools is None or status != COMPLETE or reply.continues is not None:
            return []
        reading = read_calls(reply.text, self.tools.tools)
        return [ToolStep(call, server=self.tools.servers.get(call.name, ""))
                for call in reading.calls]

    def _track(self, reply: PendingReply) -> PendingReply:
        reply.producer = dict(self.producer)
        self.pending[reply.request_id] = reply
        return reply

    def handle(self, event: Any) -> PendingReply | None:
        """Follow one worker event; returns the reply it finished, if it finished one."""
        if isinstance(event, p.WorkerDied):
            finished = None
            for pending in list(self.pending.values()):
                finished = self._finish(pending, INTERRUPTED, None, event.message)
            return finished
        reply = self.pending.get(getattr(event, "request_id", None) or "")
        if reply is None:
            return None
        if isinstance(event, p.Tokens):
            reply.text += event.text
        elif isinstance(event, p.ContextTrimmed):
            reply.dropped_messages = event.dropped_messages
        elif isinstance(event, p.Done):
            reply.text = event.text
            return self._finish(reply, _STATUS_BY_FINISH.get(event.stats.finish_reason,
                                                             COMPLETE), event.stats, None)
        elif isinstance(event, p.Error):
            return self._finish(reply, INTERRUPTED, None, event.message)
        return None

    def _finish(self, reply: PendingReply, status: str, stats: p.ReplyStats | None,
                error: str | None) -> PendingReply:
        self.pending.pop(reply.request_id, None)
        reply.error = error
        stats_dict: dict[str, Any] | None = asdict(stats) if stats else None
        if error:
            stats_dict = {**(stats_dict or {}), "error": error}
        if reply.producer:
            stats_dict = {**(stats_dict or {}), **reply.producer}
        if reply.grounding is not None:  # how many passages fit, for "3 of 6" beside it
            stats_dict = {**(stats_dict or {}), "passages": {
                "used": len(reply.grounding.sources), "found": reply.grounding.found}}
        steps = self._calls(reply, status)
        if steps or (reply.replaces is not None and reply.replaces.tool_steps):
            # A reply with calls is a node of its own: regenerated, it is a branch.
            after = reply.replaces.parent_id if reply.replaces is not None else None
            reply.saved = self.store.add_message(
                reply.conversation_id, "assistant", "" if steps else reply.text, status,
                stats_dict, **({"after": after} if reply.replaces is not None else {}),
                tool_steps=steps)
        elif reply.replaces is not None:
            if reply.text or error is None:
                reply.saved = self.store.add_version(reply.replaces.id, reply.text, status,
                                                     stats_dict)
        elif reply.continues is not None:
            content = reply.continues.content + reply.text
            self.store.update_message(reply.continues.id, content=content, status=status,
                                      stats=stats_dict)
            reply.saved = Message(reply.continues.id, reply.conversation_id,
                                  reply.continues.position, "assistant", content, status,
                                  stats_dict)
        elif reply.text or error is None:
            reply.saved = self.store.add_message(reply.conversation_id, "assistant",
                                                 reply.text, status, stats_dict)
        if reply.saved is not None and reply.grounding is not None:
            self.store.set_sources(reply.saved.id, reply.grounding.sources)
            reply.saved = replace(reply.saved, sources=list(reply.grounding.sources))
        return reply
