"""The serving layer: a trained run put to use.

``routing`` (GlyphModel: adapters routed by glyph, mixed batches, generation; ``fast_rows``
serves glyph rows without peft's per-forward copy) → ``vectors`` / ``faiss_index`` /
``index`` (the scene index) → ``service`` (GlyphService: model + index) → ``expand`` (the
decompression protocol) and ``export`` (merged model directories).
"""
