"""Rank tests of the label-noise study (:mod:`fmbench.noise_study`): Holm's correction, the matched-pairs
rank-biserial effect, and a trend test whose unit is the *training*.

The study's per-image tests compare two trained models, so with one training per rate they cannot tell
label noise from training luck.  :func:`trend` asks the question at the level where training luck
lives: over the n trainings of one noise kind (the exact-label one and one per rate, all with the same
seed), does the score move monotonically with the rate?  Kendall's τ between rate and score, with the
exact permutation p-value: under the null (the rate does not change the score) *and* if the n
trainings are exchangeable, every assignment of their scores to the rates is equally likely and
training luck is inside the null distribution.  Exchangeability is an assumption: with nested noisy
sets whose spread around the exact-label training grew with the rate, a monotone order would be
likelier than the permutation count says (docs/label-noise.md measures that spread).  With 5
trainings only a strictly monotone order reaches p < 0.05 (two-sided p = 2/120 ≈ 0.017 for τ = ±1;
one pair out of order gives 0.083).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

EXACT_UP_TO = 8  # n! orderings enumerated up to here (40 320); above, a fixed-seed Monte Carlo sample
SAMPLES = 20_000


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


def trend(x: list[float] | np.ndarray, y: list[float] | np.ndarray) -> dict[str, Any]:
    """Kendall's τ-b between ``x`` (rates) and ``y`` (one score per training) and its two-sided exact
    permutation p-value: the share of the orderings of ``y`` over ``x`` whose |S| (concordant minus
    discordant pairs) is at least the observed one.  Ties in either are allowed (τ-b's denominator does
    not change under permutation).  ``n`` is the number of trainings; ``exact`` whether every ordering
    was counted (n ≤ 8) or a fixed-seed sample of 20 000 (then p is within about ±0.007 at p = 0.05)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = x.size
    if n != y.size or n < 3:
        raise ValueError(f"a trend needs one score per rate and at least 3 of them (got {n} rates, {y.size} scores)")
    i, j = np.triu_indices(n, 1)
    sx = np.sign(x[j] - x[i])
    if n <= EXACT_UP_TO:
        orders = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(0)
        orders = np.stack([np.arange(n)] + [rng.permutation(n) for _ in range(SAMPLES - 1)])
    yp = y[orders]
    s_all = (np.sign(yp[:, j] - yp[:, i]) * sx).sum(axis=1)
    s = float((np.sign(y[j] - y[i]) * sx).sum())
    denom = math.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(np.sign(y[j] - y[i]))))
    tau = s / denom if denom else 0.0
    p = float(np.mean(np.abs(s_all) >= abs(s) - 1e-9)) if denom else 1.0
    return {"tau": round(tau, 6), "p": p, "n": int(n), "exact": n <= EXACT_UP_TO}
