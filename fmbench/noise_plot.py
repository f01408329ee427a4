"""The label-noise study's plot (:func:`plot`): accuracy and robustness against the rate of noisy
training masks, from :func:`fmbench.noise_study.study`'s numbers, with their digest in the PNG so that
a stale plot is known (:func:`plot_is_current`)."""

from __future__ import annotations

from typing import Any

from .noise_study import LABELS, SCORES


def plot(data: dict[str, Any], out: str) -> str:
    """Accuracy and robustness against the rate of noisy training masks, one line per kind (a PNG). Top
    row: each score with its 95 % interval over images; bottom row: the paired difference to exact labels
    with its 95 % interval (what the tests judge, on its own scale); filled where significant."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(SCORES), figsize=(4.0 * len(SCORES), 6.0), squeeze=False, sharex=True)
    for col, k in enumerate(SCORES):
        top, bottom = axes[0][col], axes[1][col]
        for i, kind in enumerate(data["kinds"]):
            rows, rates = kind["rows"], [r["rate"] for r in kind["rows"]]
            vals = [r[k]["value"] for r in rows]
            lo, hi = ([r[k]["ci95"][j] if r[k].get("ci95") else v for r, v in zip(rows, vals)] for j in (0, 1))
            label = f"{kind['kind']} (severity {kind['severity']:g})"
            top.plot(rates, vals, marker="o", color=f"C{i}", label=label, mfc="white")
            top.fill_between(rates, lo, hi, color=f"C{i}", alpha=0.12)
            tests = [r[f"{k}_test"] for r in rows[1:]]
            d, dlo, dhi = ([0.0] + [t["diff"] for t in tests], [0.0] + [t["ci95"][0] for t in tests],
                           [0.0] + [t["ci95"][1] for t in tests])
            bottom.plot(rates, d, marker="o", color=f"C{i}", mfc="white")
            bottom.fill_between(rates, dlo, dhi, color=f"C{i}", alpha=0.15)
            for flag, marker in (("significant_loss", "o"), ("significant_gain", "^")):
                sig = [(r["rate"], r[k]["value"], t["diff"]) for r, t in zip(rows[1:], tests) if t[flag]]
                if sig:
                    top.plot([x for x, _, _ in sig], [v for _, v, _ in sig], marker, color=f"C{i}")
                    bottom.plot([x for x, _, _ in sig], [v for _, _, v in sig], marker, color=f"C{i}")
        for j, r in enumerate(data.get("replicates") or []):  # the same setting trained with another seed
            i = next(n for n, kd in enumerate(data["kinds"]) if (kd["kind"], kd["severity"]) == (r["kind"], r["severity"]))
            t = r[k]["mean"]  # against the exact-label mean, as the grid's differences are
            top.plot([r["rate"]], [r[k]["value"]], "D", color=f"C{i}", mfc="white", ms=6)
            bottom.errorbar([r["rate"]], [t["diff"]], yerr=[[t["diff"] - t["ci95"][0]], [t["ci95"][1] - t["diff"]]],
                            fmt="D", color=f"C{i}", mfc="white", ms=6, capsize=2,
                            label=None if j else "replicate (another seed)")
        top.set_title(LABELS[k], fontsize=10)
        top.set_ylim(0, 1)
        bottom.axhline(0, color="0.5", lw=0.8)
        if data.get("floor"):
            bottom.axhspan(-data["floor"][k], data["floor"][k], color="0.85", zorder=0,
                           label="training noise (exact labels, other seeds)")
            for j, b in enumerate((-data["luck_bar"][k], data["luck_bar"][k]) if data.get("luck_bar") else ()):
                bottom.axhline(b, color="0.4", lw=0.8, ls="--", label=None if j else "95 % training-luck bar")
            if col == 0:
                bottom.legend(fontsize=7)
        bottom.set_xlabel("fraction of training masks with noise")
        if col == 0:
            top.set_ylabel("score (95 % interval over images)", fontsize=8)
            bottom.set_ylabel("Δ against exact labels (paired 95 %)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{data['model']} on {data['dataset']} ({data['protocol_id']}, {data['n_images']} test images)\n"
                 + textwrap.fill(f"Filled circle = significant loss, filled triangle = significant gain against exact labels (Holm p < 0.05, "
                 f"paired interval excluding 0, beyond the grey training-noise band, and so against seed {data['seed']} alone)"
                 + ("; open diamond = the setting trained again with another seed" if data.get("replicates") else ""),
                                 200), fontsize=8)
    fig.tight_layout()
    from .files import save_figure

    save_figure(fig, out, dpi=90, metadata={"Description": f"fmbench label-noise study {digest(data)}"})
    plt.close(fig)
    return out


def digest(data: dict[str, Any]) -> str:
    """A short hash of a study's numbers, in its plot's PNG metadata (:func:`plot_is_current`)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plot_is_current(data: dict[str, Any], path: str) -> bool:
    """Whether the PNG at ``path`` was drawn from exactly these numbers."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.info.get("Description") == f"fmbench label-noise study {digest(data)}"
    except OSError:
        return False
