"""Where a result would rank among the entries, with differences to its neighbours and
whether each difference is inside the noise of the images (a paired bootstrap over the same
test images)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import baselines, scores
from ..errors import ResultError
from ..integrity import consistency
from .entry import as_entry, model_label
from .rank import flags as entry_flags
from .rank import label_noise_of, pool_seeds, row_label, score_block, typical_spreads
from .store import schema_validator

if TYPE_CHECKING:  # names for annotations only
    from rich.table import Table

METRICS = [("robust_iou", "robust IoU (worst attack per image)"), ("corrupted_iou", "corrupted IoU"),
           ("clean_iou", "clean IoU"), ("adversarial_robustness", "rel. adversarial robustness (study)"),
           ("corruption_robustness", "rel. corruption robustness (study)")]


def _versus(mine: dict[str, Any], theirs: dict[str, Any] | None, key: str, yours: float,
            best: tuple[float, str] | None = None, typical: dict[str, tuple[float, str]] | None = None
            ) -> dict[str, Any] | None:
    """A neighbour (a row of the leaderboard: an architecture's seeds pooled): its score and
    the difference yours − theirs, with a paired 95 % interval over the shared images where the
    score has per-image values, and whether the difference is inside the seed-to-seed spread of
    the two (``within_seeds``: their own seed SD or the ``typical`` one, and the typical one for
    yours, a single training run)."""
    if theirs is None:
        return None
    block = score_block(theirs, key) or {}
    out: dict[str, Any] = {"model": row_label(theirs), "score": block, "diff": yours - block["value"],
                           "ci95": None, "within_noise": None, "within_seeds": None,
                           "flags": [f["flag"] for f in entry_flags(theirs, best)]}
    a, b = scores.per_image(mine, key), scores.per_image(theirs, key)
    ids, their_ids = list(mine["per_image"]["ids"]), list(theirs["per_image"]["ids"])
    if a is not None and b is not None and sorted(ids) == sorted(their_ids) and len(set(ids)) == len(ids):
        at = {image: k for k, image in enumerate(their_ids)}  # paired image by image, whatever the order
        paired = scores.paired_difference(a, np.asarray(b)[[at[i] for i in ids]])
        out.update(ci95=paired["ci95"], within_noise=paired["within_noise"])
    elif a is not None and b is not None:
        out["unpaired"] = True  # not the same images: no paired interval, and the reader is told
    spread = (theirs.get("seed_spread") or {}).get(key) or {}
    own_sd = spread["sd"] / np.sqrt(spread["n"]) if spread.get("sd") is not None else None  # a mean of n seeds
    usual = (typical or {}).get(key, (None, ""))[0]
    if usual is not None:
        out["within_seeds"] = bool(abs(out["diff"]) < float(np.hypot(usual, own_sd if own_sd is not None else usual)))
    return out



def protocol_typical(entries: list[dict[str, Any]], protocol_hash: str) -> dict[str, tuple[float, str]]:
    """The typical seed spread the leaderboard reads a protocol's rows against (:func:`rank.groups`):
    over the exact-label rows of every dataset of the protocol, an architecture's seeds pooled."""
    arch: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in entries:
        if e["protocol"]["hash"] == protocol_hash and not label_noise_of(e):
            arch.setdefault((e["dataset"]["ref"], model_label(e, seed=False)), []).append(e)
    return typical_spreads([pool_seeds(m) for m in arch.values()])

def compare(doc: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a result would rank among entries with its protocol hash and dataset: for each
    headline score, the study's ratios and each family, the rank it would take and the
    entries just above and below it and the best, with differences (yours minus theirs) and
    whether each is inside the noise.  A degenerate result is shown but not ranked.

    The entries of the same architecture (same reference, defence and label noise, any seed)
    are its own row, which the result would join or replace: they are left out of the ranking
    and reported on their own (``own``, the seeds pooled), so a re-run or another seed of a
    listed model is not ranked against itself."""
    if not isinstance(doc, dict) or doc.get("kind") not in ("fmbench-result", "fmbench-leaderboard-entry"):
        found = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
        raise ResultError(f"not an fmbench result or leaderboard entry (kind {found!r})")
    problems = consistency(doc)
    if problems:
        raise ResultError(f"{problems[0]} (an inconsistent result is not compared)")
    try:
        mine = as_entry(doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, StopIteration) as exc:
        raise ResultError(f"not a complete fmbench result ({type(exc).__name__}: {exc})") from None
    problems = schema_validator()[1](mine)
    if problems:
        raise ResultError(f"not a complete fmbench result: {problems[0]}")
        raise ResultError("the result has no scores (made by an older fmbench); re-run it or rescore its entry")
    h, ds = mine["protocol"]["hash"], mine["dataset"]["ref"]
    peers = [e for e in entries if e["protocol"]["hash"] == h and e["dataset"]["ref"] == ds
             and label_noise_of(e) == label_noise_of(mine)]  # noisy-label training ranks in its own track
    label = model_label(mine)
    arch: dict[str, list[dict[str, Any]]] = {}  # the leaderboard's rows: an architecture's seeds pooled
    for e in peers:
        arch.setdefault(model_label(e, seed=False), []).append(e)
    mine_arch = arch.pop(model_label(mine, seed=False), None)  # its own row: never ranked against itself
    own = pool_seeds(mine_arch) if mine_arch else None
    peers = [pool_seeds(m) for m in arch.values()]
    typical = protocol_typical(entries, h)  # as the leaderboard reads it: over every exact-label table of the protocol
    if not peers and own is None:
        if (noise := label_noise_of(mine)) and any(e["protocol"]["hash"] == h and e["dataset"]["ref"] == ds
                                                   for e in entries):
            raise ResultError(f"trained with label noise {noise}, and no entry here on {ds} · "
                              f"{mine['protocol']['id']} has that setting: noisy-label trainings never rank with "
                              "exact-label ones (the label-noise track compares them: docs/label-noise.md)")
        others = sorted({f"{e['dataset']['ref']} · {e['protocol']['id']} ({e['protocol']['hash']})" for e in entries})
        raise ResultError(f"no leaderboard entry has protocol {mine['protocol']['id']} ({h}) and dataset {ds!r}; "
                          f"entries exist for: {', '.join(others) or 'none'}")
    flags = list(doc.get("flags") or [])
    ranked = not any(f["flag"] == "degenerate" for f in flags)
    cleans = [(c, row_label(e)) for e in peers if (c := (score_block(e, "clean_iou") or {}).get("value")) is not None]
    best_clean = max(cleans) if cleans else None
    metrics = list(METRICS) + [(f, f"{f} ({b['kind']}) IoU") for f, b in mine["scores"]["families"].items()]
    out_rows = []
    for key, text in metrics:
        block = score_block(mine, key)
        if block is None or block.get("value") is None:
            continue
        yours = block["value"]
        scored = sorted((e for e in peers if (score_block(e, key) or {}).get("value") is not None),
                        key=lambda e: -score_block(e, key)["value"])  # type: ignore[index]
        values = [score_block(e, key)["value"] for e in scored]  # type: ignore[index]
        rank = 1 + sum(1 for v in values if v > yours)
        above = scored[rank - 2] if rank >= 2 else None
        below = scored[rank - 1] if rank - 1 < len(scored) else None
        out_rows.append({
            "metric": key, "label": text, "score": block, "yours": yours,
            "rank": rank if ranked else None, "of": len(scored) + 1,
            "best": _versus(mine, scored[0] if scored else None, key, yours, best_clean, typical),
            "above": _versus(mine, above, key, yours, best_clean, typical),
            "below": _versus(mine, below, key, yours, best_clean, typical),
            "own": _versus(mine, own, key, yours, best_clean, typical),
        })
    return {"model": label, "dataset": ds, "protocol_id": mine["protocol"]["id"], "protocol_hash": h,
            "n_entries": len(peers), "own_entry": own is not None, "ranked": ranked, "flags": flags,
            "label_noise": label_noise_of(mine),
            "rows": out_rows, "baselines": baselines.summary(doc.get("baselines"), doc["conditions"])}


def _neighbour(x: dict[str, Any] | None) -> str:
    from rich.markup import escape

    if x is None:
        return "—"
    ci = x.get("ci95")
    diff = f"{x['diff']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
    noise = " ≈ noise" if x.get("within_noise") else " ≈ seeds" if x.get("within_seeds") else ""
    noise += " [red](other images: not paired)[/red]" if x.get("unpaired") else ""
    flags = "".join(f" [red]{f}[/red]" for f in x.get("flags") or [])
    return f"{escape(x['model'])}{flags} {x['score']['value']:.3f} ({diff}){noise}"


def compare_table(data: dict[str, Any]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    own = data.get("own_entry")
    note = "" if data.get("ranked", True) else "; [red]not ranked: degenerate[/red]"
    t = Table(title=(f"{escape(data['model'])} against {data['n_entries']} "
                     f"{'other ' if own else ''}leaderboard rows on {data['dataset']} · "
                     f"{data['protocol_id']} (protocol {data['protocol_hash']}); Δ = yours − theirs "
                     f"\\[paired 95 % interval over the same images]; ≈ noise: the interval includes 0; "
                     f"≈ seeds: Δ is inside the seed-to-seed spread of the two (an architecture's seeds are one row, "
                     f"their mean)"
                     + ("; its own entry is left out of the ranking and shown last" if own else "") + note
                     + ("" if data["n_entries"] else "; [yellow]no other row to rank against[/yellow]" + (
                         f": trainings with label noise {data['label_noise']} rank only with that setting, and the "
                         "label-noise study compares them with exact labels (`fmbench analyze --label-noise`)"
                         if data.get("label_noise") else ""))),
              title_justify="left")
    cols = ("score", "yours", "rank", "best (Δ)", "above (Δ)", "below (Δ)") + (("its entry (Δ)",) if own else ())
    for col in cols:
        t.add_column(col, justify="left" if col == "score" else "right")
    for r in data["rows"]:
        rank = "—" if r["rank"] is None else f"{r['rank']}/{r['of']}"
        t.add_row(r["label"], scores.fmt(r["score"]), rank, _neighbour(r["best"]), _neighbour(r["above"]),
                  _neighbour(r["below"]), *((_neighbour(r["own"]),) if own else ()))
    if data.get("baselines"):
        t.add_section()
        for name, b in data["baselines"].items():  # measured on the result's own inputs, never attacked
            corrupted = "—" if b["corrupted_iou"] is None else f"{b['corrupted_iou']:.3f}"
            t.add_row(f"[dim]baseline {name}: clean / corrupted IoU[/dim]", f"[dim]{b['clean_iou']:.3f} / {corrupted}[/dim]",
                      "", "", "", "", *(("",) if own else ()))
    return t
