"""``hearth export NAME --to DIR --format {gguf,ollama,peft,safetensors}``: hand-off."""

from __future__ import annotations

import argparse
import sys

from app.errors import ExitCode
from app.models.handoff import HandoffError, HandoffFormat, export_model
from app.workspace import Workspace


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    exp = sub.add_parser("export", help="write a model for another engine: GGUF, Ollama, "
                         "a PEFT adapter, or transformers safetensors")
    exp.add_argument("name", help="the model's name in the library")
    exp.add_argument("--to", required=True, help="the folder to write into")
    exp.add_argument("--format", default="gguf", choices=[f.value for f in HandoffFormat])
    exp.add_argument("--system", default="", help="system prompt for the Ollama Modelfile")


def export(ws: Workspace, args: argparse.Namespace) -> int:
    record = ws.library.get(args.name)
    try:
        result = export_model(record, args.to, HandoffFormat(args.format),
                              ws.settings.sampling_for(record.name), args.system)
    except HandoffError as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    for path in result.files:
        print(path)
    print(f"Use it: {result.how_to_use}")
    return ExitCode.OK
