"""Where a result would rank among the entries, with differences to its neighbours."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ResultError
from .entry import as_entry, model_label
from .rank import _score

if TYPE_CHECKING:  # names for annotations only
    from rich.table import Table


def compare(doc: dict[str, Any], entries: list[dict[str, Any]], sort: str = "adversarial") -> dict[str, Any]:
    """Where a result would rank among entries with its protocol hash and dataset: for the
    clean IoU, the overall scores and each family, the rank it would take, the entries just
    above and below it and the best entry, with differences (yours minus theirs).

    An entry of the same model (same reference and defence) is the one the result would
    replace: it is left out of the ranking and reported on its own (``own``), so a re-run of a
    listed model is not ranked against itself."""
    mine = as_entry(doc)
    h, ds = mine["protocol"]["hash"], mine["dataset"]["ref"]
    peers = [e for e in entries if e["protocol"]["hash"] == h and e["dataset"]["ref"] == ds]
    label = model_label(mine)
    own = next((e for e in peers if model_label(e) == label), None)
    peers = [e for e in peers if model_label(e) != label]
    if not peers and own is None:
        others = sorted({f"{e['dataset']['ref']} · {e['protocol']['id']} ({e['protocol']['hash']})" for e in entries})
        raise ResultError(f"no leaderboard entry has protocol {mine['protocol']['id']} ({h}) and dataset {ds!r}; "
                          f"entries exist for: {', '.join(others) or 'none'}")
    metrics = [("clean_iou", "clean IoU"), ("corruption_robustness", "corruption robustness"),
               ("adversarial_robustness", "adversarial robustness")]
    fams = list(mine["summary"]["families"])
    metrics += [(f, f"{f} ({mine['summary']['families'][f]['kind']})") for f in fams]
    def versus(yours, x):
        return None if x is None else {"model": x[1], "score": x[0], "diff": yours - x[0]}

    out_rows = []
    for key, text in metrics:
        yours = _score(mine, key)
        scored = sorted(((s, model_label(e)) for e in peers if (s := _score(e, key)) is not None),
                        key=lambda x: -x[0])
        theirs = None if own is None else _score(own, key)
        if yours is None or (not scored and theirs is None):
            continue
        rank = 1 + sum(1 for s, _ in scored if s > yours)
        above = scored[rank - 2] if rank >= 2 else None
        below = scored[rank - 1] if rank - 1 < len(scored) else None
        out_rows.append({
            "metric": key, "label": text, "yours": yours, "rank": rank, "of": len(scored) + 1,
            "best": versus(yours, scored[0] if scored else None), "above": versus(yours, above),
            "below": versus(yours, below), "own": versus(yours, None if theirs is None else (theirs, label)),
        })
    return {"model": label, "dataset": ds, "protocol_id": mine["protocol"]["id"], "protocol_hash": h,
            "n_entries": len(peers), "own_entry": own is not None, "rows": out_rows}


def compare_table(data: dict[str, Any]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    own = data.get("own_entry")
    t = Table(title=(f"{escape(data['model'])} against {data['n_entries']} "
                     f"{'other ' if own else ''}entries on {data['dataset']} · "
                     f"{data['protocol_id']} (protocol {data['protocol_hash']}); Δ = yours − theirs"
                     + ("; its own entry is left out of the ranking and shown last" if own else "")),
              title_justify="left")
    cols = ("score", "yours", "rank", "best (Δ)", "above (Δ)", "below (Δ)") + (("its entry (Δ)",) if own else ())
    for col in cols:
        t.add_column(col, justify="left" if col == "score" else "right")

    def nb(x):
        return "—" if x is None else f"{escape(x['model'])} {x['score']:.3f} ({x['diff']:+.3f})"

    for r in data["rows"]:
        t.add_row(r["label"], f"{r['yours']:.3f}", f"{r['rank']}/{r['of']}", nb(r["best"]), nb(r["above"]),
                  nb(r["below"]), *((nb(r["own"]),) if own else ()))
    return t
