"""Rank statistics of the label-noise study (:mod:`fmbench.noise_study`): Holm's correction over the
rates of a kind, the matched-pairs rank-biserial effect of a paired difference, and the training-luck bar."""

from __future__ import annotations

import numpy as np


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    m = len(pvalues)
    order, adjusted, running = np.argsort(pvalues), np.empty(m), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of ``d`` (zeros dropped): +1 all positive, -1 all negative."""
    from scipy.stats import rankdata

    if (d := d[d != 0]).size == 0:
        return 0.0
    r = rankdata(np.abs(d))
    return float((r[d > 0].sum() - r[d < 0].sum()) / r.sum())


def luck_bar(values: list[float], alpha: float = 0.05, pair: bool = False) -> float:
    """The training-luck bar: half-width of the two-sided ``1 - alpha`` prediction interval for one more
    training's mean score around the mean of ``values`` (one mean score per exact-label training, seeds),
    ``t(1 - alpha/2, n - 1) * s * sqrt(1 + 1/n)``.  A noisy-label training whose difference to that mean
    is larger differs by more than training luck gives, at level ``alpha`` if the luck is normal and the
    training is one more independent draw — calibrated, unlike the largest-|Δ| floor, and wide with few
    trainings (t = 4.30 with 3).

    ``pair``: the bar for the difference between two trainings, ``t * s * sqrt(2)`` — for a noisy-label
    training against the exact-label training of its own seed.  They share initialisation and batch
    order, so they are not independent draws: given a lucky same-seed training, the first bar alone
    passes gains too often.  A difference beyond both bars (same sign) is beyond luck under either
    reading, for any non-negative correlation between same-seed trainings (``tests/test_label_noise.py``)."""
    from scipy.stats import t as student

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        raise ValueError("a training-luck bar needs at least 2 exact-label trainings")
    return float(student.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) * np.sqrt(2 if pair else 1 + 1 / v.size))
