"""Each corruption group against each attack, across the architectures of one protocol and
dataset: the study's corruption-adversarial connection broken down by family (``fmbench analyze
--families`` and the README's generated reading of it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .analysis import _pick_group, correlate, partial_correlate, pooled, seed_boot
from .errors import ResultError
from .leaderboard.entry import model_label

if TYPE_CHECKING:  # names for annotations only
    from rich.table import Table


# the corruption families grouped as the study groups its corruptions: noise, blur (space-
# invariant and space-variant), and the microscopy artefacts (optical and detector)
CORRUPTION_GROUPS = {"noise": ("noise",), "blur": ("sib", "svb"), "artefacts": ("optical", "detector")}
OVERALL_ATTACK = "adversarial (overall)"
# below this many models the percentile bootstrap of a (partial) rank correlation is close to
# degenerate: with n = 4, every resample with the four distinct points a partial correlation
# needs is a permutation of the data, so its "interval" is the point itself
MIN_RELIABLE_MODELS = 8


def architectures(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of architectures as the recipe trains them, with both robustness scores:
    defended and noisy-label variants are other models."""
    return [e for e in entries if e["summary"]["adversarial_robustness"] is not None
            and e["summary"]["corruption_robustness"] is not None
            and ((e["model"].get("training") or {}).get("defense") or "none") == "none"
            and not (e["model"].get("training") or {}).get("label_noise")]


def family_matrix(entries: list[dict[str, Any]], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every corruption group (noise, blur, artefacts; each the mean robustness of its families,
    and the overall corruption robustness) against every attack family's robustness (and the
    overall adversarial robustness), across the architectures of one protocol and dataset:
    Spearman rho with its bootstrap CI and permutation p, and the partial Spearman rho with clean
    IoU held fixed.  No correction for the number of cells: with 32 cells at 95 %, one or two
    exclude zero by chance alone (``chance_cells``)."""
    entries = architectures(entries)
    pid, phash = _pick_group(entries, "the entries")
    datasets = sorted({e["dataset"]["ref"] for e in entries})
    if len(datasets) > 1:
        raise ResultError(f"the family matrix is per dataset; the entries span {', '.join(datasets)}", hints=("dataset",))
    entries = pooled(entries)
    if len(entries) < 4:
        raise ResultError(f"the family matrix needs at least 4 models (a partial correlation); found {len(entries)}")

    def fam(e, f):
        return (e["summary"]["families"].get(f) or {}).get("robustness")

    getters: dict[str, Any] = {}  # each row and column as a function of one training's summary
    for group, fams in CORRUPTION_GROUPS.items():
        present = [f for f in fams if all(fam(e, f) is not None for e in entries)]
        if present:  # a group is the mean robustness of its families every model was scored on
            getters[group] = lambda e, present=present: float(np.mean([fam(e, f) for f in present]))
    getters["corruption (overall)"] = lambda e: e["summary"]["corruption_robustness"]
    col_names = [f for f, v in entries[0]["summary"]["families"].items()
                 if v["kind"] == "attack" and all(fam(e, f) is not None for e in entries)]
    col_get: dict[str, Any] = {f: (lambda e, f=f: fam(e, f)) for f in col_names}
    col_get[OVERALL_ATTACK] = lambda e: e["summary"]["adversarial_robustness"]
    rows = {r: [g(e) for e in entries] for r, g in getters.items()}
    cols = {c: [g(e) for e in entries] for c, g in col_get.items()}
    clean = [e["summary"]["clean_iou"] for e in entries]
    boot: dict[tuple[str, str], Any] = {}
    if any(len(e.get("members") or []) > 1 for e in entries):  # resample each architecture's seeds too
        every = {**{("r", k): g for k, g in getters.items()}, **{("c", k): g for k, g in col_get.items()},
                 ("z", "clean"): lambda e: e["summary"]["clean_iou"]}
        drawn = seed_boot({str(k): [[g(m) for m in (e.get("members") or [e])] for e in entries] for k, g in every.items()},
                          n_boot, seed)
        boot = {k: drawn[str(k)] for k in every}
    cells = {r: {c: {"spearman": correlate(x, y, n_boot=n_boot, seed=seed,
                                           boot=(boot[("r", r)], boot[("c", c)]) if boot else None)["spearman"],
                     "partial": partial_correlate(x, y, clean, n_boot=n_boot, seed=seed,
                                                  boot=(boot[("r", r)], boot[("c", c)], boot[("z", "clean")])
                                                  if boot else None)["spearman"]}
                 for c, y in cols.items()} for r, x in rows.items()}
    n_cells = len(rows) * len(cols)
    return {"scope": "family matrix", "protocol_id": pid, "protocol_hash": phash, "dataset": datasets[0],
            "n_models": len(entries), "reliable": len(entries) >= MIN_RELIABLE_MODELS,
            "models": [model_label(e, seed=False) for e in entries],
            "rows": list(rows), "cols": list(cols), "cells": cells, "n_cells": n_cells,
            "chance_cells": round(0.05 * n_cells, 1),
            "resampled": "architectures and their training seeds" if boot else "architectures"}


def family_table(m: dict[str, Any]) -> Table:
    from rich.table import Table

    t = Table(title=(f"corruption groups vs attacks · {m['protocol_id']} ({m['protocol_hash']}) · {m['dataset']} · "
                     f"{m['n_models']} models: Spearman ρ / partial ρ with clean IoU fixed; "
                     + (f"* p < 0.05 and the 95 % CI excludes 0 (no correction for {m['n_cells']} cells: ~{m['chance_cells']:g} by "
                        f"chance)" if m["reliable"] else
                        f"fewer than {MIN_RELIABLE_MODELS} models: no interval is reliable, none is marked")
                     + (f"; 95 % CIs resample {m['resampled']}" if m.get("resampled") else "")),
              title_justify="left")
    t.add_column("corruption")
    for c in m["cols"]:
        t.add_column(c, justify="right")

    for r in m["rows"]:
        t.add_row(r, *(cell_text(m["cells"][r][c], mark=m["reliable"]) for c in m["cols"]))
    return t


def cell_text(cell: dict[str, Any], mark: bool = True) -> str:
    """``plain / partial``, each with * where :func:`significant` (and ``mark``)."""
    def f(c):
        return "—" if c["r"] is None else f"{c['r']:.2f}" + ("*" if mark and significant(c) else "")

    return f"{f(cell['spearman'])} / {f(cell['partial'])}"


def significant(c: dict[str, Any], alpha: float = 0.05) -> bool:
    """A coefficient to mark: its test's p below ``alpha`` (Spearman: permutation; partial: t on
    n - 3 degrees of freedom) *and* its percentile bootstrap interval excluding zero.  Either
    alone misleads with a handful of models: with 8, a partial rank correlation's bootstrap
    interval can exclude zero at p = 0.7 (measured on the nucleus@2 quick-v2 table)."""
    return c.get("p") is not None and c["p"] < alpha and excludes_zero(c)


def excludes_zero(c: dict[str, Any]) -> bool:
    lo, hi = c.get("ci95") or (None, None)
    return lo is not None and hi is not None and (lo > 0 or hi < 0)
