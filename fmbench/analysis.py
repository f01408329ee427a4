"""Correlation between corruption robustness and adversarial robustness, across leaderboard
entries of one protocol (or across the images of one entry), with seeded bootstrap 95 %
confidence intervals, p-values, and a labelled scatter plot.

Pearson's p-value is scipy's (t distribution, exact for bivariate normal data).  Spearman's is
a permutation test: scipy's t approximation gives p = 0 for any perfect ranking, which with
three models is wrong by a lot (the exact two-sided p of rho = 1 with n = 3 is 2/3! = 0.33); the
permutations are enumerated when there are at most 9999 of them (n <= 7), else 9999 seeded
random ones.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ResultError
from .files import save_figure
from .leaderboard.entry import model_label

if TYPE_CHECKING:  # names for annotations only
    from rich.table import Table


# a sequence or array of numbers (numpy.typing.ArrayLike cannot be indexed once converted in place)
ArrayLike = Any


def _pearson_rows(x, y):
    """Pearson r along the last axis, broadcasting; NaN where either row is constant."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    sxx, syy = (xc * xc).sum(axis=-1), (yc * yc).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=-1) / np.sqrt(sxx * syy)
    flat = (np.ptp(x, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    return np.where(flat, np.nan, np.clip(r, -1.0, 1.0))


def _spearman_rows(x, y):
    """Spearman rho along the last axis (Pearson r of average ranks, as scipy computes it)."""
    from scipy.stats import rankdata

    return _pearson_rows(rankdata(x, axis=-1), rankdata(y, axis=-1))


def _partial_rows(x, y, z):
    """Pearson r of the residuals of ``x`` and ``y`` after a least-squares line on ``z``, along
    the last axis: the partial correlation with z held fixed.  NaN where a residual is flat."""
    zc = z - z.mean(axis=-1, keepdims=True)
    szz = (zc * zc).sum(axis=-1, keepdims=True)

    def resid(v):
        vc = v - v.mean(axis=-1, keepdims=True)
        beta = np.divide((vc * zc).sum(axis=-1, keepdims=True), szz, out=np.zeros_like(szz), where=szz > 0)
        return vc - beta * zc

    rx, ry = resid(x), resid(y)
    sx, sy = np.sqrt((rx * rx).sum(axis=-1)), np.sqrt((ry * ry).sum(axis=-1))
    tol = 1e-9 * np.sqrt(x.shape[-1]) * np.maximum(np.abs(x).max(axis=-1), np.abs(y).max(axis=-1)).clip(min=1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (rx * ry).sum(axis=-1) / (sx * sy)
    return np.where((sx <= tol) | (sy <= tol), np.nan, np.clip(r, -1.0, 1.0))


def _ci(boots):
    boots = boots[~np.isnan(boots)]
    ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if boots.size else [None, None]
    return ci, int(boots.size)


def correlate(x: ArrayLike, y: ArrayLike, *, n_boot: int = 2000, seed: int = 0,
              boot: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Pearson and Spearman correlation of ``x`` and ``y`` with p-values (Spearman's by
    permutation, see the module docstring) and percentile bootstrap 95 % CIs (resampling pairs
    with a seeded generator; resamples where either variable is constant are skipped).  The
    resamples and permutations are computed as arrays, not one scipy call each.  ``boot``: the
    resampled values ``(n_boot, n)`` to use instead of ``x[idx]``, ``y[idx]`` (:func:`seed_boot`)."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    out: dict[str, Any] = {"n": n}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = np.ptp(x) == 0 or np.ptp(y) == 0
    for name, rows in (("pearson", _pearson_rows), ("spearman", _spearman_rows)):
        if flat:
            out[name] = {"r": None, "p": None, "ci95": [None, None]}
            continue
        r = float(rows(x, y))
        if name == "pearson":
            p = float(stats.pearsonr(x, y)[1])
        else:
            p = float(stats.permutation_test((x,), lambda xs, axis: _spearman_rows(xs, y), permutation_type="pairings",
                                             vectorized=True, n_resamples=9999, alternative="two-sided",
                                             random_state=seed).pvalue)
        ci, used = _ci(rows(*(boot if boot is not None else (x[idx], y[idx]))))
        out[name] = {"r": r, "p": p, "ci95": ci, "n_boot": used}
    return out


def partial_correlate(x: ArrayLike, y: ArrayLike, z: ArrayLike, *, n_boot: int = 2000, seed: int = 0,
                      boot: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Partial Pearson and Spearman correlation of ``x`` and ``y`` controlling for ``z``
    (Spearman's: the same on ranks), with the usual t-test on n - 3 degrees of freedom and
    percentile bootstrap 95 % CIs (pairs resampled with a seeded generator, ranks and the
    regression on ``z`` recomputed in every resample; degenerate resamples are skipped).

    Robustness is a ratio to each model's own clean IoU, so a weak model has little to lose under
    both kinds of stress; holding clean IoU fixed asks whether corruption robustness still
    predicts adversarial robustness among models of equal clean accuracy.  Needs n >= 4."""
    from scipy import stats

    x, y, z = (np.asarray(v, float) for v in (x, y, z))
    n = len(x)
    out: dict[str, Any] = {"n": n, "controls": "clean IoU"}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    distinct = 1 + (np.diff(np.sort(idx, axis=1), axis=1) != 0).sum(axis=1) >= 4  # resamples with >= 4 points
    for name, tf in (("pearson", lambda v: v), ("spearman", lambda v: stats.rankdata(v, axis=-1))):
        r = float(_partial_rows(tf(x), tf(y), tf(z))) if n >= 4 else math.nan
        if math.isnan(r):
            out[name] = {"r": None, "p": None, "ci95": [None, None]}
            continue
        df = n - 3
        p = 0.0 if abs(r) == 1 else float(2 * stats.t.sf(abs(r) * math.sqrt(df / (1 - r * r)), df))
        bx, by, bz = boot if boot is not None else (x[idx], y[idx], z[idx])
        boots = _partial_rows(tf(bx), tf(by), tf(bz))
        ci, used = _ci(np.where(distinct, boots, np.nan))
        out[name] = {"r": r, "p": p, "ci95": ci, "n_boot": used}
    return out


def _pick_group(entries: list[dict[str, Any]], what: str) -> tuple[str | None, str | None]:
    hashes = sorted({(e["protocol"]["id"], e["protocol"]["hash"]) for e in entries})
    if len(hashes) > 1:
        raise ResultError(f"{what} span {len(hashes)} protocols ({', '.join(f'{i} {h}' for i, h in hashes)})",
                          hints=("tier",))
    return hashes[0] if hashes else (None, None)


PARTIAL = "corruption (overall), clean IoU held fixed"


def pooled(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per architecture and dataset: the seeds of one are pooled (their summaries
    averaged), so a model trained three times neither counts three times nor by its luckiest run."""
    from .leaderboard.rank import pool_seeds

    arch: dict[tuple[str, str], list] = {}
    for e in entries:
        arch.setdefault((model_label(e, seed=False), e["dataset"]["ref"]), []).append(e)
    return [pool_seeds(m) for m in arch.values()]


def seed_boot(per_seed: dict[str, list[list[float]]], n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Two-level bootstrap of architectures and, within each, its training seeds: for every
    variable (``per_seed[name]``: per architecture, its seeds' values), the resampled means
    ``(n_boot, n)``.  The architectures drawn are those :func:`correlate` draws with the same
    ``seed``; the seeds drawn for one (resample, position) are the same for every variable, so
    the variables stay paired."""
    first = next(iter(per_seed.values()))
    n, sizes = len(first), np.asarray([len(v) for v in first])
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    k = sizes[idx]  # (n_boot, n): the seeds of the architecture at each place
    width = int(sizes.max())
    pick = np.random.default_rng([seed, 1]).integers(0, 2 ** 31, size=(n_boot, n, width)) % k[..., None]
    valid = np.arange(width) < k[..., None]
    out = {}
    for name, groups in per_seed.items():
        table = np.full((n, width), np.nan)
        for i, g in enumerate(groups):
            table[i, :len(g)] = g
        vals = table[idx[..., None], pick]
        out[name] = np.where(valid, vals, 0.0).sum(-1) / k
    return out


def _seed_value(member: dict[str, Any], name: str) -> float:
    """One training's value of a variable :func:`across_entries` correlates."""
    sm = member["summary"]
    if name.startswith("corruption: "):
        return float(sm["families"][name[len("corruption: "):]]["robustness"])
    return float(sm[{"adversarial": "adversarial_robustness", "clean": "clean_iou",
                     "corruption (overall)": "corruption_robustness"}[name]])


def across_entries(entries: list[dict[str, Any]], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Correlations across entries (one point per architecture, its seeds averaged) of one
    protocol: overall corruption robustness and each corruption family against adversarial
    robustness, and the overall one again as a partial correlation with clean IoU held fixed
    (``PARTIAL``).  Where an architecture has several training seeds, the intervals resample its
    seeds too (:func:`seed_boot`): training luck widens them as much as it should."""
    from .leaderboard.rank import label_noise_of, row_label

    clean_labels = [e for e in entries if not label_noise_of(e)]  # a noisy-label training is no architecture point
    if entries and not clean_labels:
        raise ResultError("these are label-noise track entries: `fmbench analyze --label-noise` studies them")
    entries = [e for e in clean_labels if e["summary"]["adversarial_robustness"] is not None
               and e["summary"]["corruption_robustness"] is not None]
    pid, phash = _pick_group(entries, "the entries")
    entries = pooled(entries)
    if len(entries) < 3:
        raise ResultError(f"correlation needs at least 3 entries with corruption and adversarial scores; found "
                          f"{len(entries)}")
    multi = len({e["dataset"]["ref"] for e in entries}) > 1
    labels = [row_label(e) + (f" · {e['dataset']['ref']}" if multi else "") for e in entries]
    adv = [e["summary"]["adversarial_robustness"] for e in entries]
    xs = {"corruption (overall)": [e["summary"]["corruption_robustness"] for e in entries]}
    fams = [f for f, v in entries[0]["summary"]["families"].items() if v["kind"] == "corruption"]
    for f in fams:
        vals = [e["summary"]["families"].get(f, {}).get("robustness") for e in entries]
        if all(v is not None for v in vals):
            xs[f"corruption: {f}"] = vals
    clean = [e["summary"]["clean_iou"] for e in entries]
    boot: dict[str, np.ndarray] | None = None
    if any(len(e.get("members") or []) > 1 for e in entries):
        names = ["adversarial", "clean", *xs]
        boot = seed_boot({nm: [[_seed_value(m, nm) for m in (e.get("members") or [e])] for e in entries]
                          for nm in names}, n_boot, seed)
    correlations = {k: correlate(v, adv, n_boot=n_boot, seed=seed,
                                 boot=None if boot is None else (boot[k], boot["adversarial"])) for k, v in xs.items()}
    correlations[PARTIAL] = partial_correlate(xs["corruption (overall)"], adv, clean, n_boot=n_boot, seed=seed,
                                              boot=None if boot is None else (boot["corruption (overall)"],
                                                                              boot["adversarial"], boot["clean"]))
    return {"scope": "entries", "protocol_id": pid, "protocol_hash": phash,
            "datasets": sorted({e["dataset"]["ref"] for e in entries}), "labels": labels, "adversarial": adv,
            "corruption": xs["corruption (overall)"], "clean": clean, "correlations": correlations,
            "resampled": "architectures and their training seeds" if boot is not None else "architectures"}


def within_entry(entry: dict[str, Any], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Correlations across the images of one entry: each image's corruption robustness (mean
    over corruption families of the mean IoU ratio to its reference IoU) against its
    adversarial robustness.  Images with a reference IoU of 0 have no ratio and are left out."""
    per = entry.get("per_image")
    if not per:
        raise ResultError(f"entry {model_label(entry)} has no per-image scores; a within-entry analysis needs them")
    ref = per["iou"]["reference"]
    by_fam: dict[str, tuple[str, list[str]]] = {}
    for c in entry["conditions"]:
        if c["kind"] != "reference":
            by_fam.setdefault(c["family"], (c["kind"], []))[1].append(c["id"])

    def fam_score(i, ids):
        return float(np.mean([per["iou"][cid][i] / ref[i] for cid in ids]))

    labels, corr, adv = [], [], []
    fam_x: dict[str, list[float]] = {}
    for i, image in enumerate(per["ids"]):
        if ref[i] == 0:
            continue
        cs = {f: fam_score(i, ids) for f, (k, ids) in by_fam.items() if k == "corruption"}
        ads = [fam_score(i, ids) for f, (k, ids) in by_fam.items() if k == "attack"]
        if not cs or not ads:
            raise ResultError(f"entry {model_label(entry)} needs both corruption and attack conditions")
        labels.append(image)
        corr.append(float(np.mean(list(cs.values()))))
        adv.append(float(np.mean(ads)))
        for f, v in cs.items():
            fam_x.setdefault(f"corruption: {f}", []).append(v)
    if len(labels) < 3:
        raise ResultError(f"correlation needs at least 3 images with a reference IoU above 0; found {len(labels)}")
    xs = {"corruption (overall)": corr, **fam_x}
    return {"scope": f"images of {model_label(entry)} on {entry['dataset']['ref']}",
            "protocol_id": entry["protocol"]["id"], "protocol_hash": entry["protocol"]["hash"],
            "datasets": [entry["dataset"]["ref"]], "labels": labels, "adversarial": adv, "corruption": corr,
            "correlations": {k: correlate(v, adv, n_boot=n_boot, seed=seed) for k, v in xs.items()}}


def scatter(data: dict[str, Any], out: str | Path) -> Path:
    """A scatter PNG of corruption against adversarial robustness, every point labelled."""
    try:
        import matplotlib
    except ImportError:
        raise ResultError("the scatter plot needs matplotlib (pip install matplotlib, or the 'dev' extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 5), dpi=120)
    ax.scatter(data["corruption"], data["adversarial"], s=28)
    for x, y, label in zip(data["corruption"], data["adversarial"], data["labels"]):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    c = data["correlations"]["corruption (overall)"]
    r = c["spearman"]["r"]
    ax.set_title(f"{data['protocol_id']} · {', '.join(data['datasets'])} — {data['scope']}\n"
                 f"Spearman ρ = {'—' if r is None else f'{r:.2f}'} (n = {c['n']})", fontsize=9)
    ax.set_xlabel("corruption robustness")
    ax.set_ylabel("adversarial robustness")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return out


def correlation_table(data: dict[str, Any]) -> Table:
    from rich.table import Table

    t = Table(title=(f"relative corruption vs relative adversarial robustness (the study's ratios: IoU under a "
                     f"condition / clean IoU) · {data['protocol_id']} ({data['protocol_hash']}) · "
                     f"{', '.join(data['datasets'])} · across {data['scope']} (n = {len(data['labels'])})"
                     + (f"; 95 % CIs resample {data['resampled']}" if data.get("resampled") else "")),
              title_justify="left")
    for col in ("corruption robustness", "Pearson r", "95 % CI", "p", "Spearman ρ", "95 % CI", "p"):
        t.add_column(col, justify="left" if col.startswith("corruption") else "right")

    def f(v, fmt=".3f"):
        return "—" if v is None else format(v, fmt)

    for name, c in data["correlations"].items():
        row = [name]
        for k in ("pearson", "spearman"):
            lo, hi = c[k]["ci95"]
            row += [f(c[k]["r"]), f"[{f(lo)}, {f(hi)}]", f(c[k]["p"], ".3g")]
        t.add_row(*row)
    return t
