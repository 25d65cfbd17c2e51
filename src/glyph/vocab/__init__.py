"""The vocabulary layer: which symbols may be glyphs, which ids they get, and the tokenizer.

``unicode`` (what may be a glyph) → ``family`` (a base family's ids; ``qwen`` its data) →
``registry`` (``glyphs_registry.yaml``) → ``sources`` (the base tokenizer) → ``tokenizer``
(one token per glyph). Nothing here imports torch, transformers or faiss.
"""
