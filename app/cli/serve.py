"""``hearth serve``: the local OpenAI-compatible server, without the app."""

from __future__ import annotations

import argparse
import sys

from app.cli.common import pick_model
from app.docs.embedder import Embedder
from app.docs.shelf import Shelf
from app.docs.store import DocumentStore
from app.errors import BadInput, ExitCode
from app.inference.client import InferenceClient
from app.serve.documents import ServerDocuments
from app.serve.errors import ServeError
from app.serve.models import OwnModels
from app.serve.security import KEY_ENV, api_key, key_path
from app.serve.server import DEFAULT_PORT, LocalServer
from app.workspace import Workspace


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="serve a model to OpenAI clients on 127.0.0.1 "
                           "(an API key is required)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("-m", "--model", help="model loaded at start (default: the starter "
                       "model); a request naming another library model switches to it")
    serve.add_argument("--show-key", action="store_true", help="print the API key")


def serve(ws: Workspace, args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port must be between 0 and 65535, not {args.port}")
    record = pick_model(ws, args.model)
    notices: list[str] = []
    key = api_key(ws.home.root, notices)
    for notice in notices:  # a damaged key file kept aside: a new key
        print(f"hearth: {notice}", file=sys.stderr)
    client = InferenceClient(listener=lambda _event: None,
                             log_file=ws.home.logs / "inference-worker.log", home=ws.home)
    host = OwnModels(ws, client)
    try:
        try:
            host.ready(record.name)
        except ServeError as exc:
            print(f"hearth: {exc}", file=sys.stderr)
            return ExitCode.FAILED
        try:
            server = LocalServer(host, key, args.port, ServerDocuments(Shelf(
                DocumentStore(ws.library.conn), lambda: Embedder.for_home(ws.home))))
        except OSError as exc:
            raise BadInput(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}; "
                           "choose another --port") from None
        where = (f"${KEY_ENV}" if key != _kept_key(ws) else str(key_path(ws.home.root)))
        print(f"Serving {record.name} at {server.url} (API key: "
              f"{key if args.show_key else 'in ' + where}). Ctrl+C stops.", file=sys.stderr)
        sys.stderr.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.httpd.server_close()
            server.replies.close()
            if server.documents is not None:
                server.documents.close()
        return ExitCode.OK
    finally:
        client.close()


def _kept_key(ws: Workspace) -> str:
    try:
        return key_path(ws.home.root).read_text("utf-8").strip()
    except OSError:
        return ""
