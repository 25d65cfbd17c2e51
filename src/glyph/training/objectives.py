"""Training objectives: what one micro-batch's loss is, as one module call.

- ``lm`` — the scene text's NLL after ``glyph + header`` (with the glyph's adapter);
- ``distill`` — context distillation: the teacher is the frozen base prompted with the
  glyph's *written meaning* before the same header, the student is the glyph token and its
  adapter, the loss is KL(teacher ‖ student) on the scene's tokens — a prompt and a LoRA
  bending the same token probabilities, made trainable;
- ``lm+distill`` — the mean of the two.

Any of them may add the **contrast** term: the same scene after a *wrong* glyph, with that
glyph's adapter, must be less likely than after its own by a margin —
``max(0, margin − (NLL_wrong − NLL_own))`` per scene (mean NLL per token). It pushes back the
failure measured on a real base: one trigger's adapter making every scene likely. The wrong
glyph is on another trigger (``contrast_to="trigger"``) or a *sibling* on the same trigger
(``"sibling"``): the same adapter, so only the two embedding rows can make the difference —
aimed at what the real base's evaluation diagnosed (glyphs sharing a trigger barely told apart).

:class:`StepLoss` is the module the recipe calls (and, with several processes, the one DDP
wraps), so the wrong glyph's pass happens inside the same forward.

Example::

    >>> loss_fn = StepLoss(glm, "distill", contrast=1.0, margin=1.0)    # doctest: +SKIP
    >>> loss, stats = loss_fn(part, tokens=812, seqs=8)                  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model.adapters import active
from .config import OBJECTIVES


@dataclass
class Part:
    """One micro-batch of one process: tensors, its trigger, and what the objective needs."""

    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    trigger: str
    weight: float = 1.0                     # 0 for a process with no example in this batch
    teacher: torch.Tensor | None = None     # teacher hidden states at the labelled tokens
    wrong: tuple | None = None              # (ids, mask, labels, trigger) of the wrong glyphs


@dataclass
class Stats:
    main: float = 0.0       # sum over tokens of the main objective
    nll: float = 0.0        # sum over tokens of the NLL (when computed)
    tokens: int = 0
    hinge: float = 0.0      # sum over scenes of the contrast term
    gap: float = 0.0        # sum over scenes of NLL_wrong − NLL_own
    seqs: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, other: "Stats") -> None:
        for k in ("main", "nll", "tokens", "hinge", "gap", "seqs"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def per_sequence(values: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """Mean of flat row-major per-token ``values`` for each row of the ``[B, T]`` mask."""
    counts = sel.sum(1)
    rows = torch.repeat_interleave(torch.arange(len(counts), device=values.device), counts)
    sums = torch.zeros(len(counts), dtype=values.dtype, device=values.device)
    sums.index_add_(0, rows, values)
    return sums / counts.clamp(min=1)


class StepLoss(torch.nn.Module):
    """The loss of one :class:`Part`: ``(loss to backpropagate, Stats)``.

    The loss is already normalised by the whole step's label tokens and scenes (across every
    micro-batch and process, ``tokens`` and ``seqs``), so summing the backward passes of all
    parts gives the gradient of the step's mean loss.
    """

    def __init__(self, glm, objective: str = "lm", *, contrast: float = 0.0,
                 margin: float = 1.0, world: int = 1):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}")
        self.glm, self.objective = glm, objective
        self.contrast, self.margin, self.world = contrast, margin, world

    @property
    def needs_teacher(self) -> bool:
        return self.objective != "lm"

    def forward(self, part: Part, tokens: int, seqs: int):
        glm, st = self.glm, Stats()
        want_nll = self.objective != "distill" or self.contrast > 0
        nll, kl, sel = glm.token_losses(part.ids, part.mask, part.labels, part.trigger,
                                        teacher_hs=part.teacher, nll=want_nll)
        main = {"lm": lambda: nll, "distill": lambda: kl,
                "lm+distill": lambda: 0.5 * (nll + kl)}[self.objective]()
        loss = main.sum() / max(1, tokens)
        st.main, st.tokens = main.sum().item(), int(sel.sum())
        st.nll = nll.sum().item() if nll is not None else 0.0
        if self.contrast > 0 and part.wrong is not None:
            ids, mask, labels, trig = part.wrong
            with active(glm.peft_model, trig):
                wrong, _, wsel = glm.token_losses(ids, mask, labels, trig, nll=True)
            gap = per_sequence(wrong, wsel) - per_sequence(nll, sel)
            hinge = torch.clamp(self.margin - gap, min=0)
            loss = loss + self.contrast * hinge.sum() / max(1, seqs)
            st.hinge, st.gap, st.seqs = hinge.sum().item(), gap.sum().item(), len(gap)
        # several processes: DDP averages the gradients, so undo the average
        return loss * part.weight * self.world, st


class PartBuilder:
    """Turns one step's examples into :class:`Part`\\ s: micro-batches, the teacher's hidden
    states (computed once per example and kept: the teacher is frozen), the wrong glyphs."""

    def __init__(self, glm, examples, tok, reg, *, pad_id: int, seed: int, teacher: bool,
                 contrast: bool, contrast_to: str = "trigger"):
        self.glm, self.examples, self.tok, self.pad_id = glm, examples, tok, pad_id
        self.seed, self.teacher, self.contrast = seed, teacher, contrast
        self.contrast_to = contrast_to
        self.cache: dict[int, torch.Tensor] = {}
        glyphs = [g for g in reg.active()]
        self.trigger_of = {g.symbol: g.trigger for g in glyphs}
        self.by_trigger: dict[str, list[str]] = {}
        for g in glyphs:
            if any(e.scene is not None and e.scene.glyph == g.symbol for e in examples):
                self.by_trigger.setdefault(g.trigger, []).append(g.symbol)

    def parts(self, step: int, trigger: str, idx: list[int], n_parts: int,
              weight: float) -> list[Part]:
        from .data import collate

        wrong = self._wrong_glyphs(step, trigger, idx) if self.contrast else None
        size = -(-len(idx) // n_parts)
        out = []
        for chunk in (idx[i: i + size] for i in range(0, len(idx), size)):
            ids, mask, labels = collate([self.examples[i] for i in chunk], self.pad_id)
            part = Part(ids, mask, labels, trigger, weight)
            if self.teacher:
                part.teacher = self._teacher(chunk)
            if wrong is not None:
                trig, symbols = wrong
                exs = [self.examples[i].with_prompt(self.tok, symbols[i]) for i in chunk]
                part.wrong = (*collate(exs, self.pad_id), trig)
            out.append(part)
        return out

    def _wrong_glyphs(self, step: int, trigger: str, idx: list[int]):
        """One wrong trigger for the step — the step's own with ``contrast_to="sibling"`` when
        it has another glyph, else another one when there is — and for each example a glyph of
        it that is not its own; deterministic in (seed, step)."""
        import random

        rng = random.Random(self.seed * 1_000_003 + step)
        others = sorted(t for t in self.by_trigger if t != trigger)
        if self.contrast_to == "sibling" and len(self.by_trigger.get(trigger, ())) > 1:
            wrong = trigger
        else:
            wrong = rng.choice(others) if others else trigger
        symbols = {}
        for i in idx:
            own = self.examples[i].scene.glyph
            pool = [s for s in self.by_trigger[wrong] if s != own] or \
                [s for t in sorted(self.by_trigger) for s in self.by_trigger[t] if s != own]
            symbols[i] = rng.choice(pool)
        return wrong, symbols

    def _teacher(self, chunk: list[int]) -> torch.Tensor:
        from .data import collate

        missing = [i for i in chunk if i not in self.cache]
        if missing:
            exs = [self.examples[i].teacher() for i in missing]
            ids, mask, labels = collate(exs, self.pad_id)
            hs = self.glm.teacher_hidden(ids, mask, labels)
            counts = (labels[:, 1:] != -100).sum(1).tolist()
            for i, part in zip(missing, torch.split(hs, counts)):
                self.cache[i] = part.detach().clone()
        return torch.cat([self.cache[i] for i in chunk])
