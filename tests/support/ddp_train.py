"""``glyph train`` for ``accelerate launch`` in tests, with two test-only guards.

- In every process but the main one, glyph's file-publishing helpers raise: a write from a
  non-main process fails the run, so a passing run proves that only the main process wrote.
- ``GLYPH_TEST_CRASH_AFTER=N`` stops every process before step N+1, as a kill would.
"""
import os
import sys

if os.environ.get("RANK", "0") != "0":
    import glyph.files as files

    def _refuse(*args, **kwargs):
        raise RuntimeError(f"process {os.environ['RANK']} tried to write {args[:1]}")

    files.atomic_write = _refuse   # patched before any glyph module imports the names
    files.publishing = _refuse

crash_after = int(os.environ.get("GLYPH_TEST_CRASH_AFTER", "0"))
if crash_after:
    from glyph.training import recipe

    _step = recipe.Recipe.step

    def _crashing_step(self, trigger, idx):
        if self.step_no >= crash_after:
            raise SystemExit(17)
        return _step(self, trigger, idx)

    recipe.Recipe.step = _crashing_step

from glyph.cli import main  # noqa: E402

main(sys.argv[1:])
