"""Evidence that a glyph carries its scene: metrics on scenes a run never trained on.

For each glyph and overall, on the held-out split (``--split train`` shows memorisation):

- **retrieval** — from the run's FAISS index, the glyph's vector retrieves among all held-out
  scenes: recall@1 and @5 of its own (``|own ∩ top-k| / min(k, #own)``), vs chance;
- **specificity** — every held-out scene is scored (NLL per token) with every glyph, each with
  its own adapter; accuracy = how often the scene's own glyph gives the lowest NLL, vs chance
  ``1 / #glyphs``;
- **glyph gain** — NLL with its own glyph vs no glyph (the base, header only) vs a different
  glyph (mean over the others): ``gain_vs_none = none − own``, ``gain_vs_other = other − own``;
- **prompt equivalence** — the glyph's written meaning (N tokens) in the prompt of the base
  model is the "prompt" way to bend the same probabilities: ``recovered = (none − own) /
  (none − meaning)``, the KL between next-token distributions with the glyph and with the
  meaning, and the compression ratio N : 1;
- **diagnosis** — where specificity is lost (same trigger? hub glyphs? which styles?):
  :mod:`glyph.evaluation.diagnose`;
- **base preservation** — KL between the routed model and the untouched base on the same
  texts without any glyph: routing sends them to the base, so it must be exactly 0. The KL a
  forced adapter would cause is shown beside it, as the scale of what routing prevents.

Example::

    >>> m = evaluate("runs/default")                       # doctest: +SKIP
    >>> spec = m["overall"]["specificity"]                 # doctest: +SKIP
    >>> spec["accuracy"], spec["chance"]                    # doctest: +SKIP
    (0.12, 0.071)
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .diagnose import STYLES, by_style, diagnose, nanmean as _mean
from .scoring import Scorer

METRICS_VERSION = 3  # 2: meaning specificity, specific gains, per-scene retrieval;
                     # 3: every glyph's and meaning's NLL per scene, the diagnosis


def scene_retrieval(index, scene_list, symbols) -> dict:
    """Per scene: is the glyph vector nearest to the scene's own vector its glyph's?

    One query per held-out scene (not one per glyph), so the accuracy is a rate over many
    scenes; chance is ``1 / #glyphs``. ``by_style``: the same rate per register, level and
    language (where the misses are).
    """
    keys = [s for s in symbols if index.has_glyph(s)]
    if not keys:
        return {"per_glyph": {}, "overall": {"accuracy": float("nan"), "chance": float("nan")},
                "by_style": {}}
    hits: dict[str, list[bool]] = {}
    styles, every = [], []
    for s in scene_list:
        v = index.scene_vector(s.id)
        if v is None:
            continue
        hit = index.rank_glyphs(v, keys)[0][0] == s.glyph
        hits.setdefault(s.glyph, []).append(hit)
        every.append(hit)
        styles.append({k: getattr(s, k) for k in STYLES})
    per = {g: {"accuracy": _mean(h), "scenes": len(h)} for g, h in hits.items()}
    return {"per_glyph": per, "overall": {"accuracy": _mean(every), "scenes": len(every),
                                          "chance": 1 / len(keys)},
            "by_style": by_style(styles, every)}


def retrieval(index, scene_list, symbols, ks=(1, 5)) -> dict:
    """Recall@k of each glyph's own scenes among ``scene_list`` (the held-out pool)."""
    pool = {s.id for s in scene_list}
    own = {g: {s.id for s in scene_list if s.glyph == g} for g in symbols}
    per = {}
    for g in symbols:
        if not own[g]:
            continue
        hits = index.search(index.glyph_vector(g), k=max(ks), where=lambda m: m["id"] in pool)
        ids = [h.scene_id for h in hits]
        per[g] = {f"recall@{k}": len(own[g] & set(ids[:k])) / min(k, len(own[g])) for k in ks}
    overall = {f"recall@{k}": _mean(v[f"recall@{k}"] for v in per.values()) for k in ks}
    # chance: a random ranking puts k·#own/#pool own scenes in the top k on average
    overall.update({f"chance@{k}": _mean(k * len(own[g]) / len(pool) / min(k, len(own[g]))
                                         for g in per) for k in ks})
    return {"per_glyph": per, "overall": overall}


def summarize(rows: list[dict], n_glyphs: int) -> dict:
    """Aggregate per-scene rows (``glyph, best, own, none, other, meaning, meaning_other,
    meaning_best, kl_meaning``).

    The *specific* gain (another glyph's NLL − the own glyph's) is what only this glyph
    brings: a gain over "no glyph" may be corpus style any adapter learns. The written
    meaning gets the same two numbers, scored on the base, as the bar a glyph should reach.
    """
    own, nn, oth, mean_, mean_oth = (_mean(r[k] for r in rows) for k in (
        "own", "none", "other", "meaning", "meaning_other"))
    gain_meaning = nn - mean_
    meaning_acc = _mean(r["meaning_best"] == r["glyph"] for r in rows) \
        if all(r.get("meaning_best") for r in rows) else float("nan")
    return {
        "scenes": len(rows),
        "specificity": {"accuracy": _mean(r["best"] == r["glyph"] for r in rows),
                        "meaning_accuracy": meaning_acc, "chance": 1 / n_glyphs},
        "nll": {"own": own, "none": nn, "other": oth, "meaning": mean_,
                "meaning_other": mean_oth},
        "gain_vs_none": nn - own, "gain_vs_other": oth - own,
        "specific_gain": {"glyph": oth - own, "meaning": mean_oth - mean_},
        "prompt_equivalence": {"recovered": (nn - own) / gain_meaning if gain_meaning > 0
                               else None, "meaning_gain": gain_meaning,
                               "kl_meaning_vs_glyph": _mean(r["kl_meaning"] for r in rows)},
    }


def _scenes(corpus, glyphs, split: str, max_scenes: int | None) -> list:
    """The scenes to score: the run's glyphs' scenes of ``split``, a subsample if asked.

    The subsample is stratified by glyph (each glyph the same share, see ``_quotas``) and
    evenly spread over each glyph's scenes by id: no glyph drops out of a small evaluation,
    and the same call always picks the same scenes.
    """
    scene_list = sorted((s for s in corpus.select(split=split) if s.glyph in glyphs),
                        key=lambda s: s.id)
    if not max_scenes or max_scenes >= len(scene_list):
        return scene_list
    by_glyph: dict[str, list] = {}
    for s in scene_list:
        by_glyph.setdefault(s.glyph, []).append(s)
    quota = _quotas({g: len(v) for g, v in by_glyph.items()}, max_scenes)
    keep = []
    for g, group in by_glyph.items():
        n, k = len(group), quota[g]
        keep += [group[int((i + 0.5) * n / k)] for i in range(k)]
    return sorted(keep, key=lambda s: s.id)


def _quotas(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over groups as evenly as their sizes allow.

    Smallest group first, each takes its fair share of what is left (or all it has), so a
    short group's unused share goes to the others and any remainder to the largest.

    >>> _quotas({"a": 1, "b": 10, "c": 3}, 9)
    {'a': 1, 'c': 3, 'b': 5}
    """
    quota, left = {}, total
    order = sorted(sizes, key=lambda g: (sizes[g], g))
    for i, g in enumerate(order):
        quota[g] = min(sizes[g], left // (len(order) - i))
        left -= quota[g]
    return quota


@dataclass(frozen=True)
class Measures:
    """Which parts of an evaluation to compute beyond the glyphs' NLLs (each costs passes)."""

    meanings: bool = True      # every written meaning as a prompt (the base: cached per base)
    kl: bool = True            # KL(meaning ‖ glyph): both full distributions, per scene
    preservation: bool = True  # glyph-free text through the routing vs the base
    retrieval: bool = True     # the index (built when missing; scene vectors cached per base)


LIGHT = Measures(meanings=False, kl=False, preservation=False, retrieval=False)


def evaluate(run: Path | str, *, split: str = "heldout", registry=None, corpus=None,
             max_scenes: int | None = None, batch_size: int = 16, svc=None, light: bool = False,
             measures: Measures = Measures(), log: Callable[[str], None] | None = None) -> dict:
    """Compute the metrics of the module docstring for ``run``; return the metrics dict.

    ``light=True`` (``measures=LIGHT``) computes only the glyphs' NLL metrics (specificity,
    gains): what the saturation experiment needs for each of its runs. ``svc``: an already
    loaded :class:`~glyph.serving.service.GlyphService` of the run.
    """
    from ..corpus import scenes as sc
    from ..serving.service import GlyphService
    from ..vocab import registry as registry_mod

    if split not in sc.SPLITS:
        raise ConfigError(f"--split {split!r} must be one of {', '.join(sc.SPLITS)}")
    t0 = time.time()
    say = log or (lambda m: None)
    reg = registry if registry is not None else registry_mod.load()
    svc = svc or GlyphService.load(run, registry=reg)
    gm = svc.model
    corpus = corpus if corpus is not None else sc.load_corpus(reg)
    symbols = sorted(gm.glyphs, key=lambda s: gm.glyphs[s].id)
    scene_list = _scenes(corpus, gm.glyphs, split, max_scenes)
    if len(scene_list) < 2 or len(symbols) < 2:
        raise ConfigError(f"need at least 2 glyphs and 2 {split} scenes to evaluate; the run has "
                          f"{len(symbols)} glyphs and the corpus {len(scene_list)} such scenes")
    measures = LIGHT if light else measures
    scorer = Scorer(gm, batch_size=batch_size)
    trig = {g: gm.glyphs[g].trigger for g in symbols}
    meaning_prompt = {g: gm.glyphs[g].meaning for g in symbols}
    rows = _score_rows(scorer, scene_list, symbols, trig, meaning_prompt, measures, say, split)
    per_glyph = {}
    for g in symbols:
        rs = [r for r in rows if r["glyph"] == g]
        if not rs:
            continue
        n_tokens = len(scorer.tok.encode(meaning_prompt[g], add_special_tokens=False).ids)
        per_glyph[g] = {**summarize(rs, len(symbols)), "name": gm.glyphs[g].name,
                        "trigger": trig[g], "compression": f"{n_tokens}:1",
                        "meaning_tokens": n_tokens}
    overall = summarize(rows, len(symbols))
    metrics = {"version": METRICS_VERSION, "run": str(gm.run.path.resolve()), "split": split,
               "seed": gm.manifest.config.get("seed"), "base": gm.manifest.base.name,
               "glyphs": len(symbols), "overall": overall, "per_glyph": per_glyph,
               "diagnosis": diagnose(rows, trig), "scenes": rows}
    if measures.preservation:
        overall["base_preservation"] = base_preservation(gm, scorer, scene_list, symbols)
    if not measures.retrieval:
        return {**metrics, "seconds": round(time.time() - t0, 1)}
    if svc.index is None:
        say("the run has no index yet: building it")
        svc.build_index(corpus, log=log)
    ret = retrieval(svc.index, scene_list, symbols)
    per_scene = scene_retrieval(svc.index, scene_list, symbols)
    overall["retrieval"] = {**ret["overall"], "scene_accuracy": per_scene["overall"]["accuracy"],
                            "scene_chance": per_scene["overall"]["chance"],
                            "scene_vectors": svc.index.info.get("scene_vectors"),
                            "scene_layers": svc.index.info.get("layers")}
    for g, v in ret["per_glyph"].items():
        per_glyph[g]["retrieval"] = {**v, "scene_accuracy": per_scene["per_glyph"].get(
            g, {}).get("accuracy", float("nan"))}
    return {**metrics, "seconds": round(time.time() - t0, 1)}


def _score_rows(scorer, scene_list, symbols, trig, meaning_prompt, measures, say, split):
    """Per scene: NLL with no glyph, with each glyph (its adapter) and, when measured, with
    each glyph's written meaning (the base) and the KL between own meaning and own glyph."""
    say(f"scoring {len(scene_list)} {split} scenes with no glyph, each of {len(symbols)} glyphs"
        + (" and each written meaning" if measures.meanings else ""))
    lead = scorer.lead
    none = scorer.nll([(s.prompt("", lead), s.text) for s in scene_list], None)
    table = {g: scorer.nll([(s.prompt(g, lead), s.text) for s in scene_list], trig[g])
             for g in symbols}
    nan = [float("nan")] * len(scene_list)
    meanings = {g: nan for g in symbols}
    kl_gm = nan
    if measures.meanings:
        meanings = {g: scorer.nll([(s.meaning_prompt(meaning_prompt[g], lead), s.text)
                                   for s in scene_list], None) for g in symbols}
    if measures.kl:
        say("KL between each glyph and its written meaning")
        kl_gm = _kl_meaning_vs_glyph(scorer, scene_list, meaning_prompt, trig)
    rows = []
    for i, s in enumerate(scene_list):
        scores = {g: table[g][i] for g in symbols}
        by_meaning = {g: meanings[g][i] for g in symbols}
        rows.append({"id": s.id, "glyph": s.glyph, "register": s.register, "level": s.level,
                     "lang": s.lang, "none": none[i], "own": scores[s.glyph],
                     "other": _mean(v for g, v in scores.items() if g != s.glyph),
                     "meaning": by_meaning[s.glyph],
                     "meaning_other": _mean(v for g, v in by_meaning.items() if g != s.glyph),
                     "kl_meaning": kl_gm[i], "best": min(scores, key=scores.get),
                     "meaning_best": min(by_meaning, key=by_meaning.get) if measures.meanings
                     else None, "scores": scores,
                     "meaning_scores": by_meaning if measures.meanings else None})
    return rows


def _kl_meaning_vs_glyph(scorer, scene_list, meaning_prompt, trig) -> list[float]:
    """Per scene: KL(p(·|meaning, base) ‖ p(·|glyph, its adapter)) over the scene's text."""
    out = [0.0] * len(scene_list)
    for g in sorted({s.glyph for s in scene_list}):
        idx = [i for i, s in enumerate(scene_list) if s.glyph == g]
        kls = scorer.kl([(scene_list[i].meaning_prompt(meaning_prompt[g], scorer.lead),
                          scene_list[i].text) for i in idx], None,
                        [(scene_list[i].prompt(g, scorer.lead), scene_list[i].text)
                         for i in idx], trig[g])
        for i, v in zip(idx, kls):
            out[i] = v
    return out


def base_preservation(gm, scorer, scene_list, symbols, n: int = 24) -> dict:
    """KL between the routed model and a freshly loaded base on glyph-free texts (must be 0).

    The routed side goes through :meth:`GlyphModel.route_logits`, i.e. the same routing that
    ``generate`` uses; the reference is the base checkpoint loaded on its own.
    """
    import torch

    texts = [s.prompt("", scorer.lead) + s.text for s in scene_list[:n]]
    base = gm.run.load_base()
    forced_trigger = gm.glyphs[symbols[0]].trigger
    routed_kl, forced_kl, max_abs = [], [], 0.0
    for t in texts:
        ids = scorer.tok.encode(t, add_special_tokens=False).ids[: 256]
        x = torch.tensor([ids])
        # float64: a KL summed over 151,936 entries in float32 has ~1e-7 of rounding noise,
        # as large as a real but small difference on a near-uniform base
        with torch.no_grad():
            want = torch.log_softmax(base(input_ids=x).logits.double(), -1)
            got = torch.log_softmax(gm.route_logits(t, ids=x).double(), -1)
            with gm.adapters(forced_trigger):
                forced = torch.log_softmax(gm.model(input_ids=x).logits.double(), -1)
        routed_kl.append((want.exp() * (want - got)).sum(-1).mean().item())
        forced_kl.append((want.exp() * (want - forced)).sum(-1).mean().item())
        max_abs = max(max_abs, (want - got).abs().max().item())
    return {"texts": len(texts), "kl_routed_vs_base": _mean(routed_kl),
            "max_abs_logprob_diff": max_abs, "kl_if_adapter_forced": _mean(forced_kl),
            "forced_adapter": forced_trigger}


def write_metrics(metrics: dict, out: Path) -> Path:
    """Write ``metrics.json`` (atomically) and return its path."""
    from ..files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.json", json.dumps(metrics, ensure_ascii=False, indent=2))
    return out / "metrics.json"
