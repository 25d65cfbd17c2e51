"""Whitening scene vectors by how scenes vary *within* a glyph (a shrunk, shared-covariance LDA).

Style-centred base vectors still spend most of their length on directions in which the
scenes of one glyph differ as much as scenes of different glyphs (wording, length, the
particular image). Dividing every direction by its within-glyph spread — learnt on the
*training* scenes only — makes the directions that tell glyphs apart count: on the real
Qwen2.5-Coder-0.5B base it lifts per-scene retrieval of held-out scenes from 0.57 to 0.76 and
on the tiny default from 0.21 to 0.31 (``benchmarks/expand.md``, "Which vectors").

With 896 dimensions and ~1,000 training scenes the within-glyph covariance is poorly
estimated, so it is shrunk towards its mean variance; how much is chosen by cross-validation
on the training scenes (nearest glyph centroid, :data:`FOLDS` folds), because the best amount
depends on the width of the base (0.3 on the 896-wide real base, 0.03 on the 128-wide tiny one).

Example::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 6)); labels = np.arange(40) % 4; x[:, 0] += 3 * labels
    >>> w = fit(x, labels, np.ones(40, bool))
    >>> w.transform.shape, w.shrinkage in SHRINKAGE
    ((6, 6), True)
"""
from __future__ import annotations

from dataclasses import dataclass

#: shrinkage tried, as a share of the mean within-glyph variance added to every direction
SHRINKAGE = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
FOLDS = 5


@dataclass(frozen=True)
class Whitening:
    """A symmetric transform ``x @ transform`` and how it was chosen."""

    transform: object          # (d, d) float32 array
    shrinkage: float           # the chosen entry of SHRINKAGE
    cv_accuracy: float         # nearest-centroid accuracy of held-out folds at that shrinkage

    def notes(self) -> dict:
        """What the index records about the choice (JSON-ready)."""
        return {"whitening": {"shrinkage": self.shrinkage, "folds": FOLDS,
                              "cv_scene_accuracy": round(self.cv_accuracy, 4)}}


def _within(x, labels):
    """Eigen-decomposition of the within-class covariance of ``x``: ``(values, vectors)``."""
    import numpy as np

    centred = x.copy()
    for c in np.unique(labels):
        centred[labels == c] -= x[labels == c].mean(0)
    values, vecs = np.linalg.eigh(centred.T @ centred / len(x))
    return np.clip(values, 0, None), vecs


def _accuracy(z, labels, fit, test) -> float:
    """Share of ``test`` rows whose nearest class centroid (cosine, from ``fit``) is theirs."""
    import numpy as np

    u = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    classes = np.unique(labels[fit])
    cents = np.stack([u[fit & (labels == c)].mean(0) for c in classes])
    pred = classes[(u[test] @ cents.T).argmax(1)]
    return float((pred == labels[test]).mean())


def fit(x, labels, train, *, shrinkage=SHRINKAGE, folds: int = FOLDS) -> Whitening | None:
    """Learn the whitening from the rows of ``x`` marked ``train`` (``labels``: their glyph).

    Returns None when there is nothing to learn from (fewer than two glyphs or fewer than two
    training scenes per fold); the caller then keeps the vectors as they are.
    """
    import numpy as np

    x = np.asarray(x, dtype="float64")
    labels, train = np.asarray(labels), np.asarray(train, dtype=bool)
    rows = np.flatnonzero(train)
    if len(np.unique(labels[rows])) < 2 or len(rows) < 2 * folds:
        return None
    fold_of = np.arange(len(rows)) % folds  # deterministic: scenes in corpus order
    scores = np.zeros(len(shrinkage))
    for f in range(folds):
        fit_rows, test_rows = np.zeros(len(x), bool), np.zeros(len(x), bool)
        fit_rows[rows[fold_of != f]], test_rows[rows[fold_of == f]] = True, True
        values, vecs = _within(x[fit_rows], labels[fit_rows])
        # x V D keeps every cosine of x V D Vᵀ (Vᵀ is a rotation): one product per fold
        rotated, scale = x @ vecs, max(float(values.mean()), 1e-12)
        for i, s in enumerate(shrinkage):
            z = rotated / np.sqrt(values + s * scale)
            scores[i] += _accuracy(z, labels, fit_rows, test_rows) / folds
    # ties go to the larger shrinkage: the safer estimate
    best = max(range(len(shrinkage)), key=lambda i: (round(scores[i], 9), shrinkage[i]))
    values, vecs = _within(x[train], labels[train])
    d = (values + shrinkage[best] * max(float(values.mean()), 1e-12)) ** -0.5
    transform = (vecs * d) @ vecs.T
    return Whitening(transform.astype("float32"), float(shrinkage[best]), float(scores[best]))
