"""The model layer: base models (``base``: resolve, load, grow rows; ``tiny``: the embedded
default), glyph row initialisation (``rows``) and scoped adapter activation (``adapters``).
Imports torch/transformers/peft lazily, inside the functions that need them.
"""
