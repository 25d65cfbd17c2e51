"""Click options generated from a config dataclass: defaults and help exist once, in the config.

Each field made with :func:`glyph.training.config.opt` becomes ``--field-name``: booleans are
flags, tuples are comma lists, ``choices`` become ``click.Choice``, ``int | None`` / ``float |
None`` take numbers, and the default shown is the config's own.

Example::

    >>> @config_options(TrainConfig, exclude={"out"})       # doctest: +SKIP
    ... def train(**kw): cfg = config_from_options(TrainConfig, kw, out=...)
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

import click

from .app import SafePath

_NUMBERS = {"int": int, "float": float, "int | None": int, "float | None": float}


def _click_type(f):
    t = str(f.type)
    choices = f.metadata.get("choices")
    if choices and not f.metadata.get("csv"):
        return click.Choice(list(choices))
    if t in _NUMBERS:
        return _NUMBERS[t]
    if t == "Path":
        return SafePath(file_okay=False, path_type=Path)
    return str


def _option(f):
    name = "--" + f.name.replace("_", "-")
    meta = f.metadata
    default = f.default if f.default is not MISSING else None
    help_ = meta.get("help", "")
    if str(f.type) == "bool":
        if default:  # on by default: --x/--no-x
            return click.option(f"{name}/--no-{name[2:]}", f.name, default=None,
                                help=f"{help_}  [default: on]")
        return click.option(name, f.name, is_flag=True, default=False, help=help_)
    # the default stays None in click (so the config's own default applies), and is shown
    if meta.get("csv"):
        extra = f" (one or more of {', '.join(meta['choices'])})" if meta.get("choices") else ""
        shown = f"  [default: {','.join(default)}]" if default else ""
        return click.option(name, f.name, default=None, help=f"comma list: {help_}{extra}{shown}")
    shown = f"  [default: {default}]" if default is not None else ""
    return click.option(name, f.name, type=_click_type(f), default=None, help=help_ + shown)


def config_options(cls, *, exclude: set[str] = frozenset()):
    """A decorator adding one option per CLI field of the dataclass ``cls``."""
    def decorate(fn):
        for f in reversed([f for f in fields(cls)
                           if f.metadata.get("cli", False) and f.name not in exclude]):
            fn = _option(f)(fn)
        return fn
    return decorate


def config_from_options(cls, values: dict, **fixed):
    """Build ``cls`` from the options given (``None`` = not given: the config's default)."""
    kw = {}
    by_name = {f.name: f for f in fields(cls)}
    for name, v in values.items():
        f = by_name.get(name)
        if f is None or v is None or (str(f.type) == "bool" and v is False and not f.default):
            continue
        if f.metadata.get("csv"):
            v = tuple(x.strip() for x in v.split(",") if x.strip())
        kw[name] = v
    return cls(**{**kw, **fixed})


__all__ = ["config_options", "config_from_options"]
