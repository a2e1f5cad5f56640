"""``hearth chat``: chat in the terminal, or answer one prompt; with ``--mcp``, with tools.

Each ``--mcp "COMMAND"`` starts an MCP server for this chat (and stops it at the end);
its tools are offered to the model. Every call is shown before it runs, with the
question a window would ask: allow once, always for this tool (this chat), or deny.
``--allow-tools`` answers "once" to every question, for scripts that chose their
servers. A tool's result is a stranger's text: it is printed through the CLI's
printable stream like every other line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any

from app.chat.tool_steps import StepState, ToolStep
from app.chat.turn import ChatSession, PendingReply
from app.cli.common import pick_model
from app.cli.terminal import printable
from app.docs.citing import Retriever
from app.docs.embedder import Embedder
from app.docs.shelf import Shelf
from app.docs.store import DocumentStore
from app.errors import BadInput, ExitCode
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.live import plan_load
from app.models.versions import ActiveVersions, chat_model
from app.tools.mcp_client import McpServer
from app.tools.toolbox import Toolbox
from app.workspace import Workspace

Ask = Callable[[ToolStep], str]
"""Asks the person about one call: "once", "always" or "deny"."""


def add_parser(sub: Any) -> None:
    chat = sub.add_parser("chat", help="chat in the terminal, or answer one prompt")
    chat.add_argument("-m", "--model", help="model name (default: the starter model)")
    chat.add_argument("-p", "--prompt", help="answer this one prompt, then exit")
    chat.add_argument("--system", default="", help="system prompt")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--seed", type=int)
    chat.add_argument("--ctx", type=int, help="context length in tokens")
    chat.add_argument("--stats", action="store_true",
                      help="print each reply's stats as one JSON line on stderr")
    chat.add_argument("--base", action="store_true",
                      help="chat with the plain base model, not its active taught version")
    chat.add_argument("--mcp", action="append", default=[], metavar="COMMAND",
                      help="an MCP server to offer tools from, e.g. \"python -m "
                      "mcp_server_time\" (repeatable); each call is asked about first")
    chat.add_argument("--allow-tools", action="store_true",
                      help="run every tool call without asking (for scripts)")
    chat.add_argument("--max-tool-calls", type=int, default=5,
                      help="tool calls in a row before the model must answer (default 5)")
    chat.add_argument("--docs", action="append", default=[], metavar="COLLECTION",
                      help="answer from this document collection (hearth docs add), "
                      "citing its passages; repeat for more")
    chat.add_argument("--tool-choice", choices=("auto", "required"), default="auto",
                      help="required: each turn starts with a tool call (small models "
                      "rarely call otherwise)")


def chat(ws: Workspace, args: argparse.Namespace) -> int:
    record = chat_model(ws.library, ActiveVersions(ws.home), pick_model(ws, args.model),
                        use_base=args.base)
    sampling = _sampling(ws.settings.sampling_for(record.name), args)
    load = ws.settings.load
    client = InferenceClient(log_file=ws.home.logs / "inference-worker.log", home=ws.home)
    toolbox = Toolbox([McpServer.from_command(c) for c in args.mcp], ws.home.logs,
                      max_rounds=max(1, args.max_tool_calls),
                      required=args.tool_choice == "required") if args.mcp else None
    stack = contextlib.ExitStack()
    try:
        documents = _documents(ws, args.docs, stack) if args.docs else None
        client.start()
        plan = plan_load(record, ws.library, None)  # a version may be a live adapter
        client.load_blocking(plan.path, n_ctx=args.ctx or load.n_ctx,
                             n_gpu_layers=load.n_gpu_layers,
                             n_threads=load.n_threads, flash_attn=load.flash_attn,
                             template=ws.settings.template_for(record.name),
                             cache_type=load.cache_type, prompt_lookup=load.prompt_lookup)
        if plan.adapter is not None:
            client.set_adapter_blocking(plan.adapter)
        session = ChatSession(ws.store, client)
        session.producer = {"model": record.name}
        session.documents = documents
        if toolbox is not None:
            session.tools = _start_tools(toolbox)
        ask = _allow_all if args.allow_tools else _ask_terminal
        title = (args.prompt or "Terminal chat").strip().splitlines()[0][:60]
        conversation = ws.store.create(title=title, model=record.name,
                                       system_prompt=args.system)

        def turn(text: str) -> int:
            return reply(session, conversation.id, text, sampling, args.stats, toolbox, ask)

        if args.prompt is not None:
            return turn(args.prompt)
        return _loop(record.name, turn)
    finally:
        if toolbox is not None:
            toolbox.close()
        client.close()
        stack.close()


def _documents(ws: Workspace, names: list[str], stack: contextlib.ExitStack) -> Retriever:
    """The collections' hybrid search, its embedding worker closed with the chat."""
    shelf = Shelf(DocumentStore(ws.library.conn), lambda: Embedder.for_home(ws.home))
    missing = [n for n in names if n not in shelf.known()]
    if missing:
        raise BadInput(f"no document collection named {', '.join(map(repr, missing))}; "
                       "hearth docs list shows them, hearth docs add -c NAME makes one")
    stack.callback(shelf.close)
    return Retriever(shelf.search, tuple(dict.fromkeys(names)))


def print_sources(reply: PendingReply) -> None:
    """The numbered passages a reply was given, under it; their text as plain text."""
    grounding = reply.grounding
    if grounding is None:
        return
    print(f"[{grounding.note}]", file=sys.stderr)
    if grounding.sources:
        print("Sources:")
    for s in grounding.sources:
        print(printable(f"[{s.number}] {s.where} ({s.collection}: {s.source})"))


def _sampling(sampling: p.SamplingParams, args: argparse.Namespace) -> p.SamplingParams:
    overrides = {name: getattr(args, name) for name in ("temperature", "max_tokens", "seed")
                 if getattr(args, name) is not None}
    try:
        return p.SamplingParams(**{**sampling.__dict__, **overrides})
    except ValueError as exc:
        raise BadInput(str(exc)) from exc


def _start_tools(toolbox: Toolbox) -> Any:
    offer = toolbox.start()
    for problem in toolbox.problems:
        print(f"hearth: {problem}", file=sys.stderr)
    print(f"Tools: {', '.join(t.name for t in offer.tools) or 'none'}", file=sys.stderr)
    return offer


def _loop(name: str, turn: Callable[[str], int]) -> int:
    print(f"Chatting with {name}. Ctrl+C stops a reply; /exit or Ctrl+D quits.",
          file=sys.stderr)
    while True:
        try:
            text = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return ExitCode.OK
        if text.strip() in ("/exit", "/quit"):
            return ExitCode.OK
        if text.strip():
            code = turn(text)
            if code != ExitCode.OK:
                return code


def reply(session: ChatSession, conversation_id: int, text: str,
          sampling: p.SamplingParams, show_stats: bool, toolbox: Toolbox | None,
          ask: Ask) -> int:
    """One turn: the reply, and while it calls tools, the calls and the answer after."""
    pending = session.send(conversation_id, text, sampling)
    while True:
        finished, code = _follow(session, pending, show_stats)
        if code != ExitCode.OK or finished is None or toolbox is None:
            return code
        if finished.saved is None or not finished.saved.tool_steps:
            return code
        steps = [settle(step, toolbox, ask) for step in finished.saved.tool_steps]
        session.resolve(finished.saved.id, steps)
        pending = session.follow_up(conversation_id, sampling)


def settle(step: ToolStep, toolbox: Toolbox, ask: Ask) -> ToolStep:
    """Show a call, ask about it (unless always allowed), and run or deny it."""
    print(f"\n[tool call] {step.call.name} {step.call.arguments}"
          f"{f'  (from {step.server})' if step.server else ''}", file=sys.stderr)
    if toolbox.needs_asking(step):
        answer = ask(step)
        if answer == "always":
            toolbox.always_allow(step.call.name)
        elif answer != "once":
            step.state = StepState.DENIED
            print("[denied]", file=sys.stderr)
            return step
    toolbox.run(step)
    label = "result" if step.state is StepState.RAN else "failed"
    shown = step.result if len(step.result) <= 2_000 else step.result[:2_000] + " […]"
    print(f"[{label}] {shown}", file=sys.stderr)
    return step


def _ask_terminal(step: ToolStep) -> str:
    while True:
        try:
            answer = input("Allow? [o]nce / [a]lways for this tool / [d]eny: ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            return "deny"
        if answer in ("o", "once", "y", "yes"):
            return "once"
        if answer in ("a", "always"):
            return "always"
        if answer in ("d", "deny", "n", "no"):
            return "deny"


def _allow_all(step: ToolStep) -> str:
    return "once"


def _follow(session: ChatSession, pending: PendingReply, show_stats: bool
            ) -> tuple[PendingReply | None, int]:
    """Print one reply as it streams; its end, and the exit code so far."""
    client = session.client
    while True:
        try:
            event = client.next_event(timeout=600)
        except KeyboardInterrupt:
            session.cancel(pending)
            continue
        if isinstance(event, p.ContextTrimmed):
            print(f"[{event.dropped_messages} older messages left out to fit the "
                  f"{event.n_ctx}-token context]", file=sys.stderr)
        elif isinstance(event, p.Tokens) and session.tools is None:
            sys.stdout.write(event.text)  # with tools, a reply may be a call: shown whole
            sys.stdout.flush()
        finished = session.handle(event)
        if finished is None:
            continue
        calls = finished.saved is not None and bool(finished.saved.tool_steps)
        if session.tools is not None and finished.saved is not None and not calls:
            sys.stdout.write(finished.saved.content)
        if not calls:
            sys.stdout.write("\n")
            sys.stdout.flush()
            print_sources(finished)
        if finished.error:
            print(f"hearth: {finished.error}", file=sys.stderr)
            return finished, ExitCode.FAILED
        if show_stats and isinstance(event, p.Done):
            s = event.stats
            print(json.dumps({"prompt_tokens": s.prompt_tokens,
                              "completion_tokens": s.completion_tokens, "ttft_s": s.ttft_s,
                              "prefill_tps": s.prefill_tps, "decode_tps": s.decode_tps,
                              "cached_tokens": s.cached_tokens,
                              "finish_reason": s.finish_reason}), file=sys.stderr)
        return finished, ExitCode.OK
