"""A reply that called tools, as the conversation keeps it: each call, what the person
decided about it, and what came back.

Such a reply is an ordinary assistant message (so branches, versions, export and import
carry it like any other) whose ``tool_steps`` hold its calls. A step starts ``pending``;
the person allows it (it ``ran``, or it ``failed``, or they stopped it while it ran:
``stopped``) or denies it (``denied``). What the model is shown next (:func:`model_turns`)
is OpenAI's shape: the assistant message with its ``tool_calls``, then one ``tool``
message per call with the result, or a sentence saying it was denied, stopped or failed,
so the model can go on either way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.chat.tools import ToolCall
from app.codec import dump_entries, load_entries


class StepState(StrEnum):
    PENDING = "pending"
    RAN = "ran"
    FAILED = "failed"
    DENIED = "denied"
    STOPPED = "stopped"


DENIED_TEXT = "The user did not allow this call. Answer without it, or ask the user."
STOPPED_TEXT = ("The user stopped this call before it finished; there is no result. "
                "Answer without it, or ask the user.")


@dataclass
class ToolStep:
    call: ToolCall
    state: StepState = StepState.PENDING
    result: str = ""
    """The tool's text (untrusted: shown plain, never as markup), or why it failed."""
    server: str = ""
    """The MCP server that offered the tool ("" when the client ran it, as over the API)."""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.call.id, "name": self.call.name, "arguments": self.call.arguments,
                "state": self.state.value, "result": self.result, "server": self.server}

    @classmethod
    def from_json(cls, data: Any) -> ToolStep | None:
        """A stored step, or None for an entry that is not one (a damaged or foreign
        file's): the rest of the conversation still loads."""
        if not isinstance(data, dict):
            return None
        try:
            call = ToolCall(str(data["id"]), str(data["name"]), str(data.get("arguments", "{}")))
            state = StepState(data.get("state", StepState.PENDING))
        except (KeyError, ValueError):
            return None
        return cls(call, state, str(data.get("result", "")), str(data.get("server", "")))

    @property
    def shown_result(self) -> str:
        """What the model is told came back."""
        if self.state is StepState.DENIED:
            return DENIED_TEXT
        if self.state is StepState.STOPPED:
            return STOPPED_TEXT
        if self.state is StepState.FAILED:
            return f"The tool failed: {self.result}"
        if self.state is StepState.PENDING:
            return "The call was not run."
        return self.result


@dataclass
class StepList:
    """A message's steps, with one codec for the database, exports and imports."""

    steps: list[ToolStep] = field(default_factory=list)

    def dumps(self) -> str:
        return dump_entries(self.steps)

    @classmethod
    def loads(cls, text: str | None) -> StepList:
        return cls(load_entries(text, ToolStep.from_json))


def model_turns(content: str, steps: list[ToolStep]) -> list[dict[str, str]]:
    """An assistant message with calls as the model is shown it (protocol messages: the
    calls as JSON text, see :mod:`app.chat.tool_prompt`)."""
    calls = [s.call.to_openai() for s in steps]
    turns = [{"role": "assistant", "content": content,
              "tool_calls": json.dumps(calls, ensure_ascii=False)}]
    turns.extend({"role": "tool", "content": s.shown_result, "tool_call_id": s.call.id,
                  "name": s.call.name} for s in steps)
    return turns
