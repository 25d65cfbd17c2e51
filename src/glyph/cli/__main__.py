"""``python -m glyph.cli`` (and ``accelerate launch -m glyph.cli``) runs the ``glyph`` command."""
from . import main

main()
