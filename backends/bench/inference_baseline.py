"""The baseline for ``hearth bench inference``: a plain llama-cpp-python loop.

Runs in its own process (the app never imports llama.cpp) with the same model, threads,
context, prompt and greedy sampling as the worker path, and prints its timings as one
JSON line, so the benchmark can report path/direct ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import llama_cpp

from app.chat.template import ChatTemplate
from app.models.gguf_file import read_gguf
from backends.inference import llama_compat as compat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--extra-bufts", type=int, default=1, choices=(0, 1),
                    help="llama.cpp's extra buffer types, as the worker path chose them")
    ap.add_argument("--conversations", required=True,
                    help="JSON list of message lists, one conversation per repeat")
    args = ap.parse_args()

    llm = compat.open_model(args.model, n_ctx=args.n_ctx, n_threads=args.threads,
                            extra_bufts=bool(args.extra_bufts), n_batch=512)
    vocab = compat.vocab(llm)
    template = ChatTemplate.from_metadata(
        read_gguf(args.model).chat_template,
        bos_token=llm.detokenize([llama_cpp.llama_vocab_bos(vocab)], special=True).decode())
    runs = []
    for messages in json.loads(args.conversations):
        prompt = template.render(messages)
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab)) and not (
            template.bos_token and prompt.startswith(template.bos_token))
        tokens = llm.tokenize(prompt.encode(), add_bos=add_bos, special=True)
        llm.reset()  # a cold prompt each time, as the worker sees a new conversation
        started = time.perf_counter()
        first = last = started
        n = 0
        for token in llm.generate(tokens, top_k=40, top_p=0.95, min_p=0.05, temp=0.0,
                                  repeat_penalty=1.1):
            now = time.perf_counter()
            if n == 0:
                first = now
            last = now
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            llm.detokenize([token])
            n += 1
            if n >= args.tokens:
                break
        ttft = first - started
        runs.append({"ttft_s": ttft, "prefill_tps": len(tokens) / ttft,
                     "decode_tps": (n - 1) / (last - first), "completion_tokens": n,
                     "prompt_tokens": len(tokens)})
    result = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
