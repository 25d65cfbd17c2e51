"""The scene corpus: ``glyphs/*.yaml`` read and validated (``scenes``), edited (``edit``), and
checked together with the registry (``project``). No torch.
"""
