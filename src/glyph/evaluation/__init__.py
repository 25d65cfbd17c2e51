"""The evaluation layer: evidence that a glyph carries its scene.

``metrics`` (held-out specificity, glyph gain, prompt equivalence, retrieval, base
preservation) → ``report`` (table, report.md, plots) and ``saturate`` (how much data a glyph
needs).
"""
