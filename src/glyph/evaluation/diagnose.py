"""Why a glyph does or does not identify its scene: where specificity is lost.

Specificity asks "does the own glyph give the scene its lowest NLL among all glyphs?". When it
fails, these numbers (computed from the same per-scene score table, no extra passes) say how:

- **trigger** — does the winning glyph at least share the own glyph's trigger (its LoRA)?
  Glyphs on one trigger share an adapter, so only their embedding rows tell them apart;
  chance = the own trigger's share of the glyphs;
- **within trigger** — among the own trigger's glyphs only, does the own glyph win? (chance =
  1 / glyphs on that trigger; a trigger with one glyph is left out);
- **calibrated** — the winner after subtracting each glyph's mean NLL over all evaluated scenes
  (no labels used): if this is much higher than plain specificity, the glyph carries its scene
  but a few glyphs lower *every* scene's NLL and win everywhere ("hub" glyphs);
- **winners** — how many scenes each glyph wins, and the top winner's share;
- **by style** — specificity per register, level and language.

Each is given for the glyph (with its adapter) and for its written meaning (the base), so a
loss that the meaning shares says "the scenes do not tell glyphs apart", not "training failed".

Example::

    >>> d = diagnose(metrics["scenes"], {"⟁": "initiation", "🜂": "initiation"})  # doctest: +SKIP
    >>> d["glyph"]["trigger"]["accuracy"], d["glyph"]["trigger"]["chance"]  # doctest: +SKIP
    (0.38, 0.25)
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping

STYLES = ("register", "level", "lang")


def nanmean(xs) -> float:
    """The mean of ``xs``; NaN when there is none (an empty group is not an error here)."""
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _argmin(scores: Mapping[str, float], keep=None) -> str:
    return min((g for g in scores if keep is None or g in keep), key=scores.get)


def _side(rows: list[dict], key: str, trig: Mapping[str, str]) -> dict | None:
    """The diagnosis of one side: ``key`` = "scores" (glyphs) or "meaning_scores" (meanings)."""
    if not rows or any(not r.get(key) for r in rows):
        return None
    symbols = sorted(rows[0][key])
    n = len(symbols)
    on = {t: {g for g in symbols if trig[g] == t} for t in set(trig[g] for g in symbols)}
    best = [_argmin(r[key]) for r in rows]
    # a glyph's mean NLL over every evaluated scene: the offset a hub glyph has everywhere
    offset = {g: nanmean(r[key][g] for r in rows) for g in symbols}
    calibrated = [_argmin({g: r[key][g] - offset[g] for g in symbols}) for r in rows]
    shared = [r for r in rows if len(on[trig[r["glyph"]]]) > 1]
    wins = Counter(best)
    return {
        "specificity": nanmean(b == r["glyph"] for b, r in zip(best, rows)),
        "trigger": {"accuracy": nanmean(trig[b] == trig[r["glyph"]] for b, r in zip(best, rows)),
                    "chance": nanmean(len(on[trig[r["glyph"]]]) / n for r in rows)},
        "within_trigger": {
            "accuracy": nanmean(_argmin(r[key], on[trig[r["glyph"]]]) == r["glyph"]
                              for r in shared),
            "chance": nanmean(1 / len(on[trig[r["glyph"]]]) for r in shared),
            "scenes": len(shared)},
        "calibrated": {"accuracy": nanmean(c == r["glyph"] for c, r in zip(calibrated, rows)),
                       "chance": 1 / n},
        "winners": dict(wins.most_common()),
        "top_winner_share": wins.most_common(1)[0][1] / len(rows),
        "by_style": by_style(rows, [b == r["glyph"] for b, r in zip(best, rows)]),
    }


def by_style(rows: list[Mapping[str, str]], hits: list[bool]) -> dict:
    """The share of ``hits`` per register, level and language of ``rows`` (one each).

    >>> by_style([{"register": "logic", "level": "micro", "lang": "en"}] * 2, [True, False])
    ... # doctest: +NORMALIZE_WHITESPACE
    {'register': {'logic': {'accuracy': 0.5, 'scenes': 2}},
     'level': {'micro': {'accuracy': 0.5, 'scenes': 2}},
     'lang': {'en': {'accuracy': 0.5, 'scenes': 2}}}
    """
    return {s: {v: {"accuracy": nanmean(h for h, r in zip(hits, rows) if r[s] == v),
                    "scenes": sum(r[s] == v for r in rows)}
                for v in sorted({r[s] for r in rows})} for s in STYLES}


def diagnose(rows: list[dict], trig: Mapping[str, str]) -> dict:
    """Where specificity is lost, for the glyphs and for their written meanings.

    ``rows``: the per-scene rows of an evaluation (each with ``glyph``, ``register``,
    ``level``, ``lang``, ``scores`` = {glyph: NLL} and, when meanings were scored,
    ``meaning_scores``); ``trig``: each glyph's trigger. A side without scores is ``None``.
    """
    return {"glyph": _side(rows, "scores", trig), "meaning": _side(rows, "meaning_scores", trig)}


def _cell(side: dict | None, path: tuple[str, ...]) -> str:
    if side is None:
        return "–"
    v = side
    for p in path:
        v = v[p]
    return f"{v:.2f}"


def markdown(d: dict) -> list[str]:
    """The diagnosis as markdown lines (a table and the winners), for ``report.md``."""
    g, m = d["glyph"], d["meaning"]
    if g is None:
        return []
    rows = [("specificity (own wins among all glyphs)", ("specificity",), None),
            ("winner shares the own trigger", ("trigger", "accuracy"), ("trigger", "chance")),
            (f"own wins among its trigger's glyphs ({g['within_trigger']['scenes']} scenes)",
             ("within_trigger", "accuracy"), ("within_trigger", "chance")),
            ("calibrated: own wins after each glyph's mean NLL is subtracted",
             ("calibrated", "accuracy"), ("calibrated", "chance")),
            ("top winner's share of all scenes", ("top_winner_share",), None)]
    lines = ["| where specificity is lost | glyph | written meaning | chance |",
             "|---|---:|---:|---:|"]
    for label, path, chance in rows:
        lines.append(f"| {label} | {_cell(g, path)} | {_cell(m, path)} | "
                     f"{_cell(g, chance) if chance else '–'} |")
    top = ", ".join(f"{s} {c}" for s, c in list(g["winners"].items())[:5])
    lines += ["", f"Scenes won, by glyph (top 5): {top}."]
    if m is not None:
        top_m = ", ".join(f"{s} {c}" for s, c in list(m["winners"].items())[:5])
        lines.append(f"By written meaning: {top_m}.")
    lines += ["", "| style | scenes | glyph specificity | meaning specificity |",
              "|---|---:|---:|---:|"]
    for s in STYLES:
        for v, x in g["by_style"][s].items():
            mv = m["by_style"][s][v]["accuracy"] if m is not None else None
            lines.append(f"| {s} {v} | {x['scenes']} | {x['accuracy']:.2f} | "
                         f"{'–' if mv is None else f'{mv:.2f}'} |")
    return lines
