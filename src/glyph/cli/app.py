"""The ``glyph`` click group and what every command shares: the one output path, error
translation, JSON output, the run option, the command line a report names.

Output: every command prints through :func:`echo` / :func:`echo_json`, which escape control
characters, bidi controls and lone surrogates (:mod:`glyph.display`): nothing glyph prints —
a scene text, a generated continuation, a hand-edited value — can drive the terminal.

Errors: a library error (:class:`glyph.errors.GlyphError`) becomes one line on stderr,
``error: …`` (at most ``MAX_ERROR_CHARS``), and its exit code (1). Anything else that escapes
a command is a glyph bug: it is reported on one line too, with exit code 70, and
``GLYPH_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..display import clip, escape, escape_json
from ..errors import GlyphError

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in glyph, not in the input


class SafePath(click.Path):
    """``click.Path`` that refuses a NUL byte or an unencodable name as a usage error (click's
    own check would let ``os.stat`` raise). Every path option and argument uses it."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "\0" in value:
            self.fail("holds a NUL byte, which no file name can", param, ctx)
        try:
            os.fsencode(value)
        except UnicodeEncodeError:  # a lone surrogate no file system name can hold
            self.fail("is not a file name this system can encode", param, ctx)
        return super().convert(value, param, ctx)


def echo(text: str = "", err: bool = False) -> None:
    """Print ``text`` (terminal-safe: see the module docstring)."""
    click.echo(escape(str(text)), err=err)


def say_error(message: str) -> None:
    """One ``error: …`` line on stderr, newlines and controls escaped, clipped."""
    click.echo("error: " + clip(escape(message, newline_ok=False)), err=True)


class Group(click.Group):
    """A click group that turns every failure into one ``error: …`` line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GlyphError as e:
            say_error(str(e))
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `glyph list | head -1`: the reader is gone, not an error
            _silence_stdout()
            ctx.exit(141)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:  # noqa: BLE001 - a bug: one line, not a traceback
            if os.environ.get("GLYPH_DEBUG"):
                raise
            first = (str(e).splitlines() or [""])[0]
            say_error(f"internal error ({type(e).__name__}: {first}); this is a glyph bug — "
                      "please report it with the command (GLYPH_DEBUG=1 shows the traceback)")
            ctx.exit(INTERNAL_ERROR)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's final flush does not raise again."""
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test runner's buffer): nothing to flush


def echo_json(obj) -> None:
    click.echo(escape_json(json.dumps(obj, ensure_ascii=False, indent=2)))


@click.group(cls=Group)
@click.version_option(package_name="glyph")
def main() -> None:
    """glyph: Unicode symbols as first-class tokens of a Qwen3 model."""
    import os
    import warnings

    # one line per event, not a progress bar per checkpoint load (set before transformers loads)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # peft 0.21 calls an API transformers 5 deprecated: noise for users, nothing to act on
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)


RUN = click.option("--run", "run", type=SafePath(file_okay=False, path_type=Path),
                    default=None, help="run directory (default: $GLYPH_RUN or "
                    "$GLYPH_HOME/runs/default, what `glyph demo` trains)")


def run_dir(run: Path | None) -> Path:
    from .. import paths

    return run or paths.default_run()


def load_service(run: Path | None):
    from ..serving.service import GlyphService
    from ..vocab import registry

    return GlyphService.load(run_dir(run), registry=registry.load_optional())


def hit_line(h) -> str:
    first = h.text.splitlines()[0][:72]
    return (f"{h.score:6.3f}  {h.scene_id:<7}{h.glyphs:<3}{h.register:<10}{h.level:<6}{h.lang:<3}"
            f"{h.split:<8}{first}")


def command_line() -> str:
    """The command being run, as a user would type it again (explicitly given options only)."""
    import shlex

    from click.core import ParameterSource

    ctx = click.get_current_context()
    words = ["glyph", *ctx.command_path.split()[1:]]
    for p in ctx.command.params:
        if ctx.get_parameter_source(p.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        if isinstance(p, click.Argument):
            words.append(str(value))
        elif p.is_flag:
            words.append(p.opts[0])
        elif p.multiple:
            for v in value:
                words += [p.opts[0], ",".join(v) if isinstance(v, tuple) else str(v)]
        else:
            words += [p.opts[0], str(value)]
    return " ".join(shlex.quote(w) for w in words)


def csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()
