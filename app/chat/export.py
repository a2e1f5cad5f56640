"""Exporting a conversation: Markdown to read or share, JSON to feed other tools.

The JSON is an OpenAI chat-completions request body (``{"model", "messages", ...}``),
the format most tools accept for a conversation — including Hearth's own fine-tuning
datasets — so an exported chat can be replayed against another server or trained on.
Only the shown version of a regenerated reply is exported: it is the one the
conversation continued from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from app.atomic import atomic_write_text
from app.chat.conversations import COMPLETE, Conversation, Message, model_messages
from app.chat.tool_prompt import openai_message
from app.errors import ExitCode, HearthError


class ExportRefused(HearthError, ValueError):
    """A file name Hearth cannot export to (not .md or .json)."""

    exit_code = ExitCode.BAD_INPUT


_STATUS_NOTES = {"cancelled": "stopped", "truncated": "cut by the token limit",
                 "interrupted": "interrupted"}


def to_openai(conversation: Conversation, messages: list[Message]) -> dict[str, Any]:
    """The conversation as an OpenAI chat-completions request body."""
    # OpenAI's shape: the calls as a list, not the protocol's text.
    turns = [openai_message(turn) for turn in model_messages(conversation, messages)]
    body: dict[str, Any] = {"model": conversation.model or "", "messages": turns}
    sampling = conversation.settings.get("sampling")
    if isinstance(sampling, dict):
        for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"),
                             ("max_tokens", "max_tokens"), ("seed", "seed")):
            if sampling.get(ours) is not None:
                body[theirs] = sampling[ours]
    return body


def to_markdown(conversation: Conversation, messages: list[Message]) -> str:
    """A readable transcript: title, model, system prompt, then each turn under a heading.

    Message text is Markdown already and is kept as written, so code blocks and lists
    survive; a reply that did not finish says why in italics under it.
    """
    lines = [f"# {conversation.title}", ""]
    meta = []
    if conversation.model:
        meta.append(f"Model: {conversation.model}")
    meta.append(f"Started: {conversation.created_at[:16].replace('T', ' ')} UTC")
    lines += ["  \n".join(meta), ""]
    if conversation.system_prompt.strip():
        lines += ["## System", "", conversation.system_prompt.strip(), ""]
    for message in messages:
        lines += [f"## {'You' if message.role == 'user' else message.role.title()}", ""]
        lines += [message.content.rstrip() or ("" if message.tool_steps else "*(empty)*"),
                  ""]
        for step in message.tool_steps:
            lines += [f"*Tool call* `{step.call.name}` ({step.state.value}): "
                      f"`{step.call.arguments}`", "", "```text", step.result.rstrip(), "```",
                      ""]
        if message.sources:
            lines += ["Sources:", ""]
            lines += [f"{s.number}. {s.where} ({s.collection})" for s in message.sources]
            lines.append("")
        if message.status != COMPLETE:
            lines += [f"*({_STATUS_NOTES.get(message.status, message.status)})*", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_export(path: str | os.PathLike[str], conversation: Conversation,
                 messages: list[Message]) -> Path:
    """Write Markdown (``.md``) or OpenAI JSON (``.json``), chosen by the suffix, atomically."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".json":
        text = json.dumps(to_openai(conversation, messages), indent=2, ensure_ascii=False)
    elif suffix in (".md", ".markdown", ".txt"):
        text = to_markdown(conversation, messages)
    else:
        raise ExportRefused(f"cannot export to {target.name}: use a .md or .json file "
                            "name")
    atomic_write_text(target, text + ("\n" if not text.endswith("\n") else ""))
    return target
