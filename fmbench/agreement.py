"""How much of a ranking is architecture and how much is training luck: the agreement between
training seeds of the same architectures (``fmbench analyze --seeds``, docs/zoo.md's table).

Every statistic comes with a 95 % interval from a bootstrap over *architectures* (the unit the
ranking is about; an architecture's seeds are resampled together), so a reading from a handful
of architectures shows how little it pins down.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .analysis import _pick_group
from .errors import ResultError
from .leaderboard.entry import model_label

N_BOOT = 2000


def icc1(groups: list[np.ndarray]) -> float | None:
    """One-way intraclass correlation ICC(1) of the values in ``groups`` (one array of seeds'
    values per architecture; unequal sizes use the usual k0): the share of the variance that
    lies between architectures.  ``None`` when it is undefined (no variance at all)."""
    parts = _parts(groups)
    got = _icc_of(parts, np.arange(len(groups))[None, :])[0]
    return None if np.isnan(got) else float(got)


def _parts(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per architecture: its number of seeds, their mean and their sum of squared deviations."""
    return (np.asarray([g.size for g in groups], float), np.asarray([g.mean() for g in groups], float),
            np.asarray([((g - g.mean()) ** 2).sum() for g in groups], float))


def _icc_of(parts: tuple[np.ndarray, np.ndarray, np.ndarray], pick: np.ndarray) -> np.ndarray:
    """ICC(1) of every row of ``pick`` (``(R, g)`` architecture indices: the original order, or
    a bootstrap resample); NaN where undefined."""
    size, mean, ss = (p[pick] for p in parts)
    g = pick.shape[1]
    n = size.sum(1)
    grand = (size * mean).sum(1) / n
    msb = (size * (mean - grand[:, None]) ** 2).sum(1) / (g - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        msw = ss.sum(1) / (n - g)
        k = (n - (size ** 2).sum(1) / n) / (g - 1)  # k0: equals n_i when balanced
        denom = msb + (k - 1) * msw
        return np.where((denom > 0) & (n > g), (msb - msw) / denom, np.nan)


def _seed_pairs(table: dict[str, dict[int, float]], seeds: list[int]) -> list[tuple[int, int]]:
    """The pairs of seeds that at least 3 architectures share (a rank correlation needs them)."""
    return [(s, t) for i, s in enumerate(seeds) for t in seeds[i + 1:]
            if sum(1 for v in table.values() if s in v and t in v) >= 3]


def _rho_of(table: dict[str, dict[int, float]], pairs: list[tuple[int, int]], archs: list[str],
            pick: np.ndarray) -> np.ndarray:
    """Spearman's rho between two seeds' scores over the picked architectures that have both
    (average ranks for ties), averaged over the seed ``pairs``, for every row of ``pick``; NaN
    where no pair has 3 values and some spread."""
    from scipy.stats import rankdata

    total, count = np.zeros(pick.shape[0]), np.zeros(pick.shape[0])
    for s, t in pairs:
        x = np.asarray([table[a].get(s, np.nan) for a in archs])[pick]
        y = np.asarray([table[a].get(t, np.nan) for a in archs])[pick]
        both = ~np.isnan(x) & ~np.isnan(y)
        rx = rankdata(np.where(both, x, np.nan), axis=1, nan_policy="omit")
        ry = rankdata(np.where(both, y, np.nan), axis=1, nan_policy="omit")
        m = both.sum(1, keepdims=True).clip(min=1)
        rx = np.where(both, rx - np.nansum(rx, 1, keepdims=True) / m, 0.0)
        ry = np.where(both, ry - np.nansum(ry, 1, keepdims=True) / m, 0.0)
        den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
        ok = (den > 0) & (both.sum(1) >= 3)
        total += np.where(ok, (rx * ry).sum(1) / np.where(ok, den, 1.0), 0.0)
        count += ok
    return np.where(count > 0, total / count.clip(min=1), np.nan)


def _stable_of(table: dict[str, dict[int, float]], archs: list[str], pick: np.ndarray) -> np.ndarray:
    """The share of pairs of picked architectures (two copies of one are no pair) whose order is
    the same under every seed they share (at least two), for every row of ``pick``."""
    g = len(archs)
    same = np.zeros((g, g), bool)
    valid = np.zeros((g, g), bool)
    for i, a in enumerate(archs):
        for j, b in enumerate(archs):
            common = sorted(set(table[a]) & set(table[b]))
            if i != j and len(common) >= 2:
                signs = {np.sign(table[a][s] - table[b][s]) for s in common}
                valid[i, j], same[i, j] = True, len(signs) == 1 and 0 not in signs
    upper = np.triu(np.ones((pick.shape[1],) * 2, bool), 1)
    v = valid[pick[:, :, None], pick[:, None, :]] & upper
    st = same[pick[:, :, None], pick[:, None, :]] & v
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(v.sum((1, 2)) > 0, st.sum((1, 2)) / v.sum((1, 2)), np.nan)


def _interval(values: np.ndarray) -> list[float] | None:
    v = values[np.isfinite(values)]
    return None if v.size < 0.5 * values.size else [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def seed_agreement(entries: list[dict[str, Any]], *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """How much of a ranking is architecture and how much is training luck, from the
    architectures trained with several seeds (one protocol and dataset): per score,

    - ``icc``: the share of the variance of the score that lies between architectures (one-way
      intraclass correlation ICC(1) over architectures x seeds; 1 = seeds agree exactly, 0 = the
      architecture explains nothing);
    - ``seed_rank_correlation``: Spearman's rho between the architectures' scores under two
      seeds, averaged over the pairs of seeds (each pair over the architectures both have);
    - ``pairs_stable``: the share of architecture pairs whose order is the same under every seed;
    - ``sd``: the median over architectures of the seed-to-seed standard deviation;

    and ``icc_ci95``, ``seed_rank_correlation_ci95``, ``pairs_stable_ci95``: 95 % percentile
    intervals from ``n_boot`` resamples of the architectures (seeded; ``None`` where fewer than
    half the resamples give a value).  A resample that draws one architecture twice counts it as
    two: the interval is about the population of architectures this zoo stands for.
    """
    from .leaderboard.rank import SPREAD_KEYS, _score, label_noise_of

    entries = [e for e in entries if not label_noise_of(e)]  # the main board's trainings only
    pid, _ = _pick_group(entries, "the entries")
    datasets = sorted({e["dataset"]["ref"] for e in entries})
    if not datasets:
        raise ResultError("no entries to measure seed agreement on (no clean-label entry matches)")
    if len(datasets) != 1:
        raise ResultError(f"seed agreement is measured on one dataset at a time; found {', '.join(datasets)}",
                          hints=("dataset",))
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for e in entries:
        s = e["model"]["training"].get("seed")
        if isinstance(s, int):
            runs.setdefault(model_label(e, seed=False), {})[s] = e
    multi = {a: r for a, r in runs.items() if len(r) >= 2}
    if len(multi) < 3:
        raise ResultError(f"seed agreement needs at least 3 architectures with 2 or more seeds; found {len(multi)}")
    seeds = sorted({s for r in multi.values() for s in r})
    out: dict[str, Any] = {"protocol_id": pid, "dataset": datasets[0], "architectures": sorted(multi),
                           "seeds": seeds, "n_boot": n_boot, "scores": {}}
    rng = np.random.default_rng(seed)
    for key in SPREAD_KEYS:
        table = {a: {s: v for s, e in r.items() if (v := _score(e, key)) is not None} for a, r in multi.items()}
        table = {a: v for a, v in table.items() if len(v) >= 2}
        if len(table) < 3:
            continue
        archs = sorted(table)
        groups = [np.asarray(list(table[a].values()), float) for a in archs]
        parts = _parts(groups)
        pick = np.vstack([np.arange(len(archs))[None, :], rng.integers(0, len(archs), (n_boot, len(archs)))])
        seed_pairs = _seed_pairs(table, seeds)
        icc, rho = _icc_of(parts, pick), _rho_of(table, seed_pairs, archs, pick)
        stable = _stable_of(table, archs, pick)
        pairs = sum(1 for i, a in enumerate(archs) for b in archs[i + 1:] if len(set(table[a]) & set(table[b])) >= 2)
        n_rho = len(seed_pairs)
        out["scores"][key] = {
            "icc": _value(icc[0]), "icc_ci95": _interval(icc[1:]),
            "seed_rank_correlation": _value(rho[0]) if n_rho else None, "n_seed_pairs": n_rho,
            "seed_rank_correlation_ci95": _interval(rho[1:]) if n_rho else None,
            "pairs_stable": _value(stable[0]) if pairs else None, "n_pairs": pairs,
            "pairs_stable_ci95": _interval(stable[1:]) if pairs else None,
            "sd": float(np.median([g.std(ddof=1) for g in groups])),
        }
    return out


def cell(value: float | None, ci: list[float] | None, percent: bool = False) -> str:
    """``0.65 [0.23, 0.79]`` (``93% [79%, 100%]`` with ``percent``); ``—`` for no value."""
    if value is None:
        return "—"
    f = (lambda x: f"{x:.0%}") if percent else (lambda x: f"{x:.2f}")
    return f(value) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else "")


def agreement_table(data: dict[str, Any]) -> Any:
    """The terminal table of :func:`seed_agreement`'s readings, each with its interval."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(f"{data['dataset']} · {data['protocol_id']}: {len(data['architectures'])} architectures, "
                           f"seeds {', '.join(map(str, data['seeds']))}; [95 % interval over architectures, "
                           f"{data['n_boot']} resamples]"), title_justify="left")
    for head in ("score", "between-architecture share (ICC)", "seed-to-seed rank ρ",
                 "pairs in the same order under every seed", "median seed SD"):
        t.add_column(head, justify="left" if head == "score" else "right")
    for key, v in data["scores"].items():
        t.add_row(key, cell(v["icc"], v["icc_ci95"]), cell(v["seed_rank_correlation"], v["seed_rank_correlation_ci95"]),
                  "—" if v["pairs_stable"] is None else f"{cell(v['pairs_stable'], v['pairs_stable_ci95'], True)} "
                                                        f"of {v['n_pairs']}", f"{v['sd']:.3f}")
    return t
