"""How a raw base vector enters the scene index's space — as data, saved beside the index.

A scene vector in the index is, at each of its layers, the base's mean hidden state over the
scene text minus the mean of the scene's *style group* (language · register · level), times
that layer's whitening; several layers are unit-normalised and joined (``serving.vectors``).
:class:`Projection` holds those centres and transforms, so any text embedded the same way
can be brought into the space later — a glyph prompt while the index is built, or a user's
own text to find its glyph (``GlyphService.compress``) — with no refitting. Saved as
``RUN/index/projection.safetensors``.

Example::

    >>> p = Projection.load("runs/default/index/projection.safetensors")   # doctest: +SKIP
    >>> p(raw, style="en/poetry/micro").shape       # raw: [m, layers, d]  # doctest: +SKIP
    (1, 3584)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def unit(x):
    """``x`` scaled to unit length along its last axis (a zero vector stays zero).

    >>> unit([[3.0, 4.0]]).tolist()
    [[0.6, 0.8]]
    """
    import numpy as np

    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class Projection:
    """Per layer: a centre to subtract and a transform (None: none); joined when several.

    ``mean`` ``[layers, d]`` is the corpus mean (the centre when the style is not known or has
    no scenes); ``centres`` maps a style group to its ``[layers, d]`` mean; ``transforms`` has
    one ``[d, d]`` array or None per layer.
    """

    mean: Any
    transforms: list
    centres: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        import numpy as np

        self.mean = np.asarray(self.mean, dtype="float32").reshape(len(self.transforms), -1)
        self.centres = {k: np.asarray(v, dtype="float32").reshape(self.mean.shape)
                        for k, v in self.centres.items()}

    @property
    def n_layers(self) -> int:
        return len(self.transforms)

    def __call__(self, raw, style: str | None = None):
        """``raw`` ``[m, layers, d]`` (or ``[m, d]`` for one layer) → ``[m, dim]`` in the space,
        centred on ``style``'s group when given (the way the index's scenes were)."""
        import numpy as np

        x = np.asarray(raw, dtype="float32")
        if x.ndim == 2:
            x = x[:, None]
        if x.shape[1:] != self.mean.shape:
            raise ValueError(f"vectors of shape {x.shape[1:]} do not fit a projection of "
                             f"{self.mean.shape} (layers, width)")
        x = x - self.centres.get(style, self.mean) if style else x - self.mean
        parts = [x[:, i] if t is None else x[:, i] @ t for i, t in enumerate(self.transforms)]
        return parts[0] if len(parts) == 1 else np.concatenate([unit(p) for p in parts], -1)

    @classmethod
    def join(cls, parts: list["Projection"]) -> "Projection":
        """One projection over the layers of ``parts`` (one layer each), in their order."""
        import numpy as np

        return cls(np.concatenate([p.mean for p in parts]),
                   [t for p in parts for t in p.transforms],
                   {k: np.concatenate([p.centres[k] for p in parts]) for k in parts[0].centres})

    # ------------------------------------------------------------ on disk
    def tensors(self) -> dict:
        """Named arrays for safetensors: ``mean``, ``transform/<i>``, ``centre/<style>``."""
        out = {"mean": self.mean}
        out.update({f"transform/{i}": t for i, t in enumerate(self.transforms) if t is not None})
        out.update({f"centre/{k}": v for k, v in self.centres.items()})
        return out

    @classmethod
    def from_tensors(cls, t: dict) -> "Projection":
        """Inverse of :meth:`tensors`; a missing or misshapen part is a ``ValueError``."""
        mean = t.get("mean")
        if mean is None or getattr(mean, "ndim", 0) != 2:
            raise ValueError("no [layers, width] 'mean' tensor")
        n, d = mean.shape
        transforms = [t.get(f"transform/{i}") for i in range(n)]
        if any(w is not None and w.shape != (d, d) for w in transforms):
            raise ValueError(f"a transform is not {d} × {d}")
        centres = {k.split("/", 1)[1]: v for k, v in t.items() if k.startswith("centre/")}
        if any(v.shape != (n, d) for v in centres.values()):
            raise ValueError(f"a style centre is not {n} × {d}")
        return cls(mean, transforms, centres)

    def save(self, path: Path | str) -> None:
        from safetensors.numpy import save_file

        save_file(self.tensors(), str(path))

    @classmethod
    def load(cls, path: Path | str) -> "Projection":
        from safetensors.numpy import load_file

        return cls.from_tensors(load_file(str(path)))
