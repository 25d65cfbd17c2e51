"""Training data: scenes become examples, examples become a schedule of batches, batches tensors.

An example is ``glyph + header → scene text + end of text`` (``⟁\\n⟨poetry · micro · en⟩\\n``
then the scene), with labels on the scene text only. The schedule is deterministic and never
mixes triggers in a batch: each step trains the one adapter its glyphs activate.

Example::

    >>> ex = encode_example(tok, scene, "⟁", "initiation", max_len=192, eos=151643)  # doctest: +SKIP
    >>> plan = schedule(examples, batch_size=8, seed=0, steps=None, epochs=3)       # doctest: +SKIP
    >>> ids, mask, labels = collate([examples[i] for i in plan[0][1]], pad_id=151643)  # doctest: +SKIP
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

IGNORE = -100  # label of a position that is not scored


@dataclass
class Example:
    scene_id: str
    trigger: str
    ids: list[int]
    labels: list[int]
    text: list[int] = field(default_factory=list)   # the labelled tokens, as cut
    scene: object = None                            # the Scene (prompts for other glyphs)
    teacher_ids: list[int] = field(default_factory=list)     # written meaning + header + text
    teacher_labels: list[int] = field(default_factory=list)
    lead: str = ""                                  # what every prompt starts with

    def with_prompt(self, tok, glyphs: str) -> "Example":
        """The same labelled text after another glyph's prompt (the contrast term's input)."""
        p = tok.encode(self.scene.prompt(glyphs, self.lead), add_special_tokens=False).ids
        return Example(self.scene_id, "", p + self.text, [IGNORE] * len(p) + self.text,
                       self.text, self.scene, lead=self.lead)

    def teacher(self) -> "Example":
        return Example(self.scene_id, "", self.teacher_ids, self.teacher_labels, self.text)


def encode_example(tok, scene, glyph_str: str, trigger: str, max_len: int, eos: int,
                   meaning: str | None = None, lead: str = "") -> Example:
    """prompt (glyphs + register/level) → scene text + ``eos``; labels only on the text.

    With ``meaning``, also the teacher's sequence for context distillation: the glyph's
    written meaning before the same header, then exactly the same labelled tokens.
    """
    p = tok.encode(scene.prompt(glyph_str, lead), add_special_tokens=False).ids
    t = (tok.encode(scene.text, add_special_tokens=False).ids + [eos])[: max(0, max_len - len(p))]
    ex = Example(scene.id, trigger, p + t, [IGNORE] * len(p) + t, t, scene, lead=lead)
    if meaning is not None:
        tp = tok.encode(scene.meaning_prompt(meaning, lead), add_special_tokens=False).ids
        ex.teacher_ids, ex.teacher_labels = tp + t, [IGNORE] * len(tp) + t
    return ex


def build_examples(reg, selected, tok, max_len: int, *, teacher: bool = False,
                   lead: str = "") -> list[Example]:
    """One example per scene, with its own glyphs and its glyph's trigger (``teacher``: and
    the written-meaning sequence context distillation needs); every prompt starts with
    ``lead``."""
    by_symbol = {g.symbol: g for g in reg.active()}
    eos = reg.family.endoftext_id
    return [encode_example(tok, s, "".join(s.glyphs), by_symbol[s.glyph].trigger, max_len, eos,
                           by_symbol[s.glyph].meaning if teacher else None, lead)
            for s in selected]


def _batches(idx: list[int], examples: list[Example], batch_size: int, rng: random.Random,
             bucket: bool) -> list[list[int]]:
    """One pass over ``idx`` in batches; with ``bucket``, batches of similar length.

    Bucketing shuffles, then sorts each window of 8 batches' worth of examples by length
    before cutting it into batches: little padding, and batches still differ every epoch.
    """
    idx = idx[:]
    rng.shuffle(idx)
    if bucket:
        window = batch_size * 8
        idx = [i for w in range(0, len(idx), window)
               for i in sorted(idx[w: w + window], key=lambda i: len(examples[i].ids))]
    batches = [idx[i: i + batch_size] for i in range(0, len(idx), batch_size)]
    if bucket:  # or the batches of one window come out shortest first
        rng.shuffle(batches)
    return batches


def schedule(examples: list[Example], batch_size: int, seed: int, *, steps: int | None,
             epochs: float, bucket: bool = False,
             balance: bool = False) -> list[tuple[str, list[int]]]:
    """Deterministic list of (trigger, example indices): batches never mix triggers.

    ``epochs`` counts passes over all examples (``steps`` overrides it). ``bucket`` groups
    examples of similar length (less padding). ``balance`` gives every trigger the same number
    of steps — a trigger with fewer scenes sees them more often — instead of steps in
    proportion to its scenes, so no adapter is trained far more than the others.
    """
    rng = random.Random(seed)
    by_trigger: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_trigger.setdefault(e.trigger, []).append(i)
    per_epoch = sum(math.ceil(len(v) / batch_size) for v in by_trigger.values())
    total = steps if steps is not None else max(1, round(per_epoch * epochs))
    out: list[tuple[str, list[int]]] = []
    if balance:
        streams = {t: [] for t in by_trigger}
        while len(out) < total:
            order = sorted(by_trigger)
            rng.shuffle(order)
            for t in order:  # one batch of each trigger per round, in a random order
                if not streams[t]:
                    streams[t] = _batches(by_trigger[t], examples, batch_size, rng, bucket)
                out.append((t, streams[t].pop()))
        return out[:total]
    while len(out) < total:
        epoch = []
        for t in sorted(by_trigger):
            epoch += [(t, b) for b in _batches(by_trigger[t], examples, batch_size, rng, bucket)]
        rng.shuffle(epoch)
        out += epoch
    return out[:total]


def padding_share(examples: list[Example], plan: list[tuple[str, list[int]]]) -> float:
    """Share of padded positions in the batches of ``plan`` (what bucketing reduces)."""
    real = sum(len(examples[i].ids) for _, b in plan for i in b)
    padded = sum(len(b) * max(len(examples[i].ids) for i in b) for _, b in plan)
    return 1 - real / max(1, padded)


def collate(batch: list, pad_id: int):
    """Pad examples (``.ids``, ``.labels``) into ``(input_ids, attention_mask, labels)``."""
    import torch

    n = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.ids)] = 1
    return ids, mask, labels
