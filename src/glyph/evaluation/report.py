"""The evaluation report: a terminal table, ``report.md`` and PNG plots (matplotlib, Agg).

Every figure carries a footer naming the run, seed, base and the command that produced it,
so a plot pasted anywhere still says where it came from.

Example::

    >>> write_report(metrics, Path("runs/default/eval"), command="glyph eval runs/default")  # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path

from ..run import Run
from .diagnose import markdown

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31",
           "#843c39", "#7b4173"]
MARKERS = {"poetry": "o", "logic": "s", "interface": "^", "body": "D"}


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def _vectors_note(overall: dict) -> str:
    """Which scene vectors the retrieval columns used (older metrics do not say)."""
    sv = overall.get("retrieval", {}).get("scene_vectors")
    layers = overall.get("retrieval", {}).get("scene_layers") or []
    # one layer (or older metrics): the last, as always
    at = f" of layers {'+'.join(map(str, layers))}" if len(layers) > 1 else ""
    return f" ({sv} scene vectors{at})" if sv else ""


def table(metrics: dict) -> str:
    """A fixed-width table of the per-glyph and overall metrics, for the terminal."""
    cols = [("glyph", 14), ("scenes", 7), ("spec", 6), ("spec·m", 7), ("NLL own", 8),
            ("none", 7), ("other", 7), ("gain", 7), ("gain·m", 7), ("Δnone", 7), ("KL m‖g", 7),
            ("N:1", 6), ("R@1", 6), ("Rsc", 6)]
    head = "".join(f"{n:<{w}}" if i == 0 else f"{n:>{w}}" for i, (n, w) in enumerate(cols))
    lines = [head, "-" * len(head)]
    rows = [(f"{g} {m['name']}", m) for g, m in metrics["per_glyph"].items()]
    rows.append(("overall", metrics["overall"]))
    ns = [m["meaning_tokens"] for m in metrics["per_glyph"].values() if "meaning_tokens" in m]
    for label, m in rows:
        n = m.get("meaning_tokens", sum(ns) / len(ns) if ns and label == "overall" else None)
        sp, sg, r = m["specificity"], m.get("specific_gain", {}), m.get("retrieval", {})
        cells = [m["scenes"], _fmt(sp["accuracy"], 2), _fmt(sp.get("meaning_accuracy"), 2),
                 _fmt(m["nll"]["own"]), _fmt(m["nll"]["none"]), _fmt(m["nll"]["other"]),
                 _fmt(sg.get("glyph")), _fmt(sg.get("meaning")), _fmt(m["gain_vs_none"]),
                 _fmt(m["prompt_equivalence"]["kl_meaning_vs_glyph"]),
                 f"{_fmt(n, 0)}:1" if n is not None else "–", _fmt(r.get("recall@1"), 2),
                 _fmt(r.get("scene_accuracy"), 2)]
        lines.append(f"{label:<14}" + "".join(f"{c:>{w}}" for c, (_, w) in zip(cells, cols[1:])))
    o = metrics["overall"]
    bp = o.get("base_preservation")
    rec = o["prompt_equivalence"]["recovered"]
    lines += ["",
              "spec / spec·m: how often the own glyph (its adapter) / the own glyph's written "
              "meaning (the base) gives a scene the lowest NLL among all glyphs'",
              "NLL: nats per scene token with the own glyph / no glyph / another glyph; gain / "
              "gain·m: specific gain (another − own) of the glyph / of the written meaning; "
              "Δnone: none − own",
              "KL m‖g: KL(meaning prompt ‖ glyph) per token; N:1: meaning tokens per glyph "
              "token; R@1: the glyph's vector retrieves an own scene first; Rsc: each scene's "
              "nearest glyph vector is its own" + _vectors_note(o),
              f"chance: spec {_fmt(o['specificity']['chance'], 3)}, R@1 "
              f"{_fmt(o.get('retrieval', {}).get('chance@1'), 3)}, Rsc "
              f"{_fmt(o.get('retrieval', {}).get('scene_chance'), 3)}; split {metrics['split']}; "
              f"share of the meaning's gain over no glyph the glyph recovers: {_fmt(rec, 2)}"]
    if bp:
        lines.append(f"base preservation: KL(routed ‖ base) on {bp['texts']} glyph-free texts = "
                     f"{bp['kl_routed_vs_base']:.3g} (max |Δ log p| "
                     f"{bp['max_abs_logprob_diff']:.3g}); an adapter forced on them would cost "
                     f"KL {bp['kl_if_adapter_forced']:.3g}")
    return "\n".join(lines)


def _footer(fig, metrics: dict, command: str) -> None:
    fig.text(0.01, 0.005, f"run {metrics['run']} · seed {metrics['seed']} · base "
             f"{metrics['base']} · split {metrics['split']} · `{command}`",
             fontsize=6.5, color="#555555", ha="left", va="bottom")


def _save(fig, out: Path, name: str, metrics: dict, command: str, bottom: float = 0.03) -> None:
    import matplotlib.pyplot as plt

    _footer(fig, metrics, command)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(out / name, dpi=130)
    plt.close(fig)


def _plot_loss(metrics, out, command, run) -> tuple[str, str] | None:
    """Training loss per step (and smoothed) and the held-out loss at intervals."""
    import matplotlib.pyplot as plt
    import numpy as np

    recs = Run(run).loss_log()
    if not recs:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = [r["step"] for r in recs]
    loss = np.array([r["loss"] for r in recs])
    w = max(1, len(loss) // 30)
    smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
    ax.plot(steps, loss, color="#bbbbbb", lw=0.7, label="train (per step)")
    ax.plot(steps[w - 1:], smooth, color="#1f77b4", lw=1.6, label=f"train ({w}-step mean)")
    held = [(r["step"], r["heldout_loss"]) for r in recs if "heldout_loss" in r]
    if held:
        ax.plot(*zip(*held), "o-", color="#d62728", lw=1.4, ms=3, label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title("Training: glyph rows + LoRA triggers")
    ax.legend(fontsize=8)
    _save(fig, out, "loss.png", metrics, command)
    return "loss.png", "Training loss per step and held-out loss at intervals."


def _plot_per_glyph(metrics, out, command, run) -> tuple[str, str]:
    """Per glyph: specificity vs chance, NLL gain, retrieval."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = [m["name"] for m in metrics["per_glyph"].values()]
    per = list(metrics["per_glyph"].values())
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    x = np.arange(len(names))
    acc = [m["specificity"]["accuracy"] for m in per]
    axes[0].bar(x, acc, color="#2ca02c")
    axes[0].axhline(metrics["overall"]["specificity"]["chance"], color="k", ls="--", lw=1,
                    label="chance")
    axes[0].set_title("specificity: own glyph gives lowest NLL")
    axes[0].legend(fontsize=7)
    axes[1].bar(x - 0.2, [m["gain_vs_none"] for m in per], 0.4, label="vs no glyph")
    axes[1].bar(x + 0.2, [m["gain_vs_other"] for m in per], 0.4, label="vs other glyph")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_title("glyph gain (nats / token)")
    axes[1].legend(fontsize=7)
    r1 = [m.get("retrieval", {}).get("recall@1", 0) for m in per]
    r5 = [m.get("retrieval", {}).get("recall@5", 0) for m in per]
    axes[2].bar(x - 0.2, r1, 0.4, label="recall@1")
    axes[2].bar(x + 0.2, r5, 0.4, label="recall@5")
    axes[2].set_title("retrieval of own scenes")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xticks(x, names, rotation=60, fontsize=7)
    _save(fig, out, "per_glyph.png", metrics, command, bottom=0.04)
    return "per_glyph.png", "Per glyph: specificity vs chance, NLL gain, retrieval."


def _plot_conditions(metrics, out, command, run) -> tuple[str, str]:
    """The four prompt conditions, overall."""
    import matplotlib.pyplot as plt

    o = metrics["overall"]["nll"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    labels = ["no glyph", "written meaning", "own glyph", "other glyph"]
    vals = [o["none"], o["meaning"], o["own"], o["other"]]
    ax.bar(labels, vals, color=["#7f7f7f", "#9467bd", "#2ca02c", "#d62728"])
    lo = min(vals) - 0.05 * abs(min(vals))
    ax.set_ylim(lo, max(vals) + 0.02 * abs(max(vals)))
    ax.set_ylabel("NLL (nats / token)")
    ax.set_title("A prompt and a LoRA bend the same probabilities")
    _save(fig, out, "conditions.png", metrics, command, bottom=0.05)
    return "conditions.png", "Mean NLL of held-out scene text under each prompt."


def _plot_map(metrics, out, command, run) -> tuple[str, str] | None:
    """A 2D map of scene and glyph vectors."""
    import matplotlib.pyplot as plt

    m2d = _map_2d(run)
    if m2d is None:
        return None
    pts, meta, gpts, gsyms = m2d
    order = list(metrics["per_glyph"])
    colour = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(order)}
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for reg, mk in MARKERS.items():
        for g in order:
            sel = [i for i, m in enumerate(meta) if m["glyphs"][0] == g and m["register"] == reg]
            if sel:
                ax.scatter(pts[sel, 0], pts[sel, 1], s=9, marker=mk, color=colour[g],
                           alpha=0.55, linewidths=0)
    for (x0, y0), g in zip(gpts, gsyms):
        if g in colour:
            ax.scatter([x0], [y0], s=140, marker="*", color=colour[g], edgecolors="k",
                       linewidths=0.8, zorder=3)
            ax.annotate(metrics["per_glyph"][g]["name"], (x0, y0), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    handles = [plt.Line2D([], [], marker=mk, ls="", color="#444444", label=reg)
               for reg, mk in MARKERS.items()]
    ax.legend(handles=handles, fontsize=7, loc="best", title="register", title_fontsize=7)
    ax.set_title("Scenes (dots, colour = glyph) and glyph vectors (stars), PCA")
    _save(fig, out, "map.png", metrics, command)
    return "map.png", "2D PCA map of the index: scenes by glyph and register, glyph vectors as stars."


PLOTS = (_plot_loss, _plot_per_glyph, _plot_conditions, _plot_map)


def _plots(metrics: dict, out: Path, command: str, run: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    return [f for f in (plot(metrics, out, command, run) for plot in PLOTS) if f is not None]


def _map_2d(run: Path):
    """PCA of the index's scene and glyph vectors (None without an index, or an approximate
    index that cannot give its vectors back): :func:`glyph.serving.atlas_map.map_2d`."""
    from ..serving.atlas_map import map_2d
    from ..serving.index import SceneIndex

    if not SceneIndex.exists(run):
        return None
    idx = SceneIndex.load(run)
    if idx.info.get("kind") != "flat":
        return None
    m = map_2d(idx)
    return None if m is None else (m.scenes, m.meta, m.glyphs, m.symbols)


def write_report(metrics: dict, out: Path, *, command: str) -> Path:
    """Write ``report.md`` + plots into ``out`` (``metrics.json`` is written by the caller)."""
    out.mkdir(parents=True, exist_ok=True)
    run = Path(metrics["run"])
    figs = _plots(metrics, out, command, run)
    o = metrics["overall"]
    lines = [
        f"# glyph evaluation — {run.name}",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"run `{metrics['run']}`, seed {metrics['seed']}, base {metrics['base']}, split "
        f"**{metrics['split']}** ({o['scenes']} scenes the run never trained on"
        + (")" if metrics["split"] == "heldout" else " — training scenes: memorisation)") + ".",
        "",
        "```",
        table(metrics),
        "```",
        "",
        "The legend under the table says what each column measures. The specific gain "
        "(another glyph's NLL − the own glyph's) and the two specificities are what show "
        "meaning: a gain over \"no glyph\" can be corpus style any adapter learns.",
        "",
    ]
    why = markdown(metrics["diagnosis"]) if metrics.get("diagnosis") else []
    if why:
        lines += ["## Where specificity is lost", "", *why, ""]
    for name, caption in figs:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return out / "report.md"
