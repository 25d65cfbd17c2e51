"""Every size limit glyph enforces, in one place (the README's "What glyph refuses" lists them).

Limits exist so that no file, argument or run directory can make glyph hang, eat the
machine's memory or print a megabyte: input past a limit is refused with one line that names
the limit. Each is generous for real use — the starter corpus's longest scene is 1,233
characters, its registry 5 KB, the longest emoji ZWJ sequence in Unicode 10 code points.

Example::

    >>> MAX_SYMBOL_CODEPOINTS
    16
"""
from __future__ import annotations

KIB, MIB = 1024, 1024 * 1024

# ---------------------------------------------------------------- files glyph reads
MAX_REGISTRY_BYTES = 8 * MIB        # glyphs_registry.yaml (≈ 24,000 glyphs)
MAX_SCENE_FILE_BYTES = 16 * MIB     # one glyphs/*.yaml, and a JSONL/CSV file to import
MAX_TEXT_FILE_BYTES = 16 * MIB      # --batch prompts, scene text from stdin
MAX_JSON_BYTES = 64 * MIB           # a run's manifest.json, train_config.json, loss.jsonl, ...
MAX_INDEX_META_BYTES = 1024 * MIB   # RUN/index/meta.json (it holds every scene's text)

# ---------------------------------------------------------------- structure of YAML
MAX_YAML_DEPTH = 20                 # nesting of lists/mappings (glyph's own files use 4)
MAX_YAML_NODES = 1_000_000          # values after expanding aliases (&a / *a): no alias bombs
MAX_INT_DIGITS = 30                 # digits of one integer in YAML or JSON

# ---------------------------------------------------------------- values
MAX_SYMBOL_CODEPOINTS = 16          # one glyph (a ZWJ sequence included)
MAX_LINE_CHARS = 500                # a meaning or a register description (one line)
MAX_SCENE_CHARS = 20_000            # one scene's text
MAX_SCENE_ID_CHARS = 40             # a scene id
MAX_ADDED_GLYPH_IDS = 65_536        # added glyph ids run from the family's first glyph id
                                    # up to this many past it (each id is a tokenizer slot)

# ---------------------------------------------------------------- output
MAX_ERROR_CHARS = 400               # one error line (longer ones end in "… (N more)")
MAX_SHOWN_CHARS = 60                # a value quoted inside a message

# ---------------------------------------------------------------- waiting
LOCK_STALL_SECONDS = 600            # give up on a lock only when ONE holder kept it this long
