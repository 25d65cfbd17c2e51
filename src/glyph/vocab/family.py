"""Base families: everything glyph knows about one tokenizer family, in one place.

A :class:`BaseFamily` names the ids that mean something (end of text, chat stops), where the
ordinary vocabulary ends and glyph ids begin, how the tokenizer is rebuilt offline and how a
foreign tokenizer is recognised as one of the family (probe strings with known ids), which
linear layers take LoRA, and the architecture of the embedded tiny base. Nothing outside
this module and the family's own data module (:mod:`glyph.vocab.qwen`) spells a token id.

Today there is one family, ``qwen``: Qwen2, Qwen2.5 and Qwen3 share its byte-level BPE
vocabulary (151,643 ranks); Qwen3's 26 added tokens end at 151668, so glyphs start at 151669.

Example::

    >>> fam = family("qwen")
    >>> fam.first_glyph_id, fam.stop_ids
    (151669, (151643, 151645))
    >>> fam.kind_of(149053), fam.kind_of(151669)
    ('claimed', 'added')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError
from . import qwen


@dataclass(frozen=True)
class BaseFamily:
    """One tokenizer family: its ids, its tokenizer rebuild and its model shape."""

    name: str
    display: str                                # how messages name it: "a Qwen token"
    added_label: str                            # how messages name its added tokens
    description: str
    base_vocab_size: int                        # ordinary tokens are 0 .. base_vocab_size-1
    added_tokens: tuple[tuple[int, str, bool], ...]   # (id, content, special) after them
    first_glyph_id: int                         # the first id glyph may give a new token
    embedding_rows: int                         # rows of the family's embedding matrices
    endoftext_id: int                           # separates documents, ends scenes, pads batches
    stop_ids: tuple[int, ...]                   # generation stops at any of these
    probes: tuple[tuple[str, tuple[int, ...]], ...]   # text → ids every member encodes alike
    lora_targets: tuple[str, ...]               # linear layers that take LoRA
    tiny_architecture: str                      # transformers class of the embedded default
    tiny_config: dict[str, Any] = field(default_factory=dict)
    bpe_tokenizer: Callable[[], Any] | None = None     # () -> (tokenizers.Tokenizer, merges)
    tokenizer_config: Callable[[], dict] | None = None
    provenance: Callable[[], dict] | None = None
    existing_token_id: Callable[[str], int | None] = lambda symbol: None

    @property
    def reserved_ids(self) -> range:
        """Ids of the family's own added tokens: never a glyph's."""
        return range(self.base_vocab_size, self.first_glyph_id)

    def kind_of(self, token_id: int) -> str:
        """``claimed`` for an ordinary token of the vocabulary, ``added`` for a new one."""
        return "claimed" if token_id < self.base_vocab_size else "added"


QWEN = BaseFamily(
    name="qwen",
    display="Qwen",
    added_label="Qwen3's added tokens",
    description="Qwen2 / Qwen2.5 / Qwen3 byte-level BPE (151,643 ranks + Qwen3's 26 added tokens)",
    base_vocab_size=qwen.BASE_VOCAB_SIZE,
    added_tokens=qwen.QWEN3_ADDED_TOKENS,
    first_glyph_id=qwen.FIRST_GLYPH_ID,
    embedding_rows=qwen.EMBEDDING_ROWS,
    endoftext_id=qwen.ENDOFTEXT,
    stop_ids=(qwen.ENDOFTEXT, qwen.IM_END),  # <|endoftext|> ends a scene, <|im_end|> a turn
    probes=(("Hello world", (9707, 1879)), ("<|im_start|>", (qwen.IM_START,)),
            ("<|endoftext|>", (qwen.ENDOFTEXT,))),
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    tiny_architecture="Qwen3ForCausalLM",
    tiny_config=dict(
        vocab_size=qwen.EMBEDDING_ROWS, hidden_size=128, intermediate_size=384,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=2048, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True, bos_token_id=qwen.ENDOFTEXT, eos_token_id=qwen.IM_END,
        pad_token_id=qwen.ENDOFTEXT),
    bpe_tokenizer=qwen.bpe_tokenizer,
    tokenizer_config=qwen.tokenizer_config,
    provenance=qwen.rebuild_provenance,
    existing_token_id=qwen.existing_token_id,
)

FAMILIES: dict[str, BaseFamily] = {QWEN.name: QWEN}
DEFAULT_FAMILY = QWEN.name


def family(name: str | None = None) -> BaseFamily:
    """The family called ``name`` (default: ``qwen``); a clear error for an unknown one."""
    key = name or DEFAULT_FAMILY
    try:
        return FAMILIES[key]
    except KeyError:
        raise ConfigError(f"unknown base family {key!r}; glyph knows "
                          f"{', '.join(sorted(FAMILIES))}") from None
