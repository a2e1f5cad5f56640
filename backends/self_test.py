"""The doctor's self-tests, each in a child process of its own.

``python -m backends.self_test llama MODEL EXTRA_BUFTS THREADS ANSWER`` loads a GGUF the
way the chat worker does and decodes a multi-token prompt (where a bad CPU kernel
crashes); ``python -m backends.self_test torch ANSWER`` reports what PyTorch sees and
takes two LoRA steps on a tiny model built here. Each writes its answer to the file
ANSWER (:mod:`app.doctor_records`); a crash, which leaves none, is the parent's finding,
which is why these never run in the app's own process.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from app.doctor_records import LlamaCheck, TorchCheck
from app.workers.answer import Answer, write_answer


def llama_check(model: str, extra_bufts: bool, threads: int) -> LlamaCheck:
    from backends.inference import llama_compat as compat

    started = time.perf_counter()
    llm = compat.open_model(model, n_ctx=512, n_threads=threads, extra_bufts=extra_bufts)
    try:
        load_s = time.perf_counter() - started
        compat.warm_up(llm)
        prompt = llm.tokenize(b"The quick brown fox jumps over the lazy dog. Then it",
                              add_bos=True)
        t0 = time.perf_counter()
        out = []
        for token in llm.generate(prompt, temp=0.0):
            out.append(token)
            if len(out) >= 16:
                break
        decode_s = time.perf_counter() - t0
        return LlamaCheck(system_info=compat.system_info(), llama_cpp_python=compat.version(),
                          gpu_offload=compat.supports_gpu_offload(), load_s=round(load_s, 3),
                          prompt_tokens=len(prompt), generated_tokens=len(out),
                          tokens_per_s=round(len(out) / decode_s, 1) if decode_s > 0 else 0.0)
    finally:
        llm.close()


def torch_check() -> TorchCheck:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=1e-2)
    ids = torch.randint(0, 64, (2, 16))
    t0 = time.perf_counter()
    losses = []
    for _ in range(2):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    finite = all(x == x and x < 1e9 for x in losses)
    return TorchCheck(error=None if finite else f"the LoRA steps gave a loss of {losses}",
                      torch=torch.__version__, cuda_devices=cuda,
                      cuda_bf16=bool(cuda) and torch.cuda.is_bf16_supported(),
                      threads=torch.get_num_threads(),
                      lora_losses=[round(x, 4) for x in losses],
                      lora_step_s=round((time.perf_counter() - t0) / 2, 3))


def main(argv: list[str]) -> int:
    result: Answer
    if argv[:1] == ["llama"] and len(argv) == 5:
        result = llama_check(argv[1], argv[2] == "1", int(argv[3]))
    elif argv[:1] == ["torch"] and len(argv) == 2:
        result = torch_check()
    else:
        print("usage: python -m backends.self_test llama MODEL 0|1 THREADS ANSWER | "
              "torch ANSWER", file=sys.stderr)
        return 2
    write_answer(Path(argv[-1]), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
