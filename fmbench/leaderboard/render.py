"""Ranked groups as rich tables, Markdown, CSV and JSON: every score with its 95 % interval,
flags beside the model, and the group's baselines as reference rows."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from .. import scores
from .rank import SORT_TEXT, baseline_rows, rows

if TYPE_CHECKING:  # names for annotations only
    from rich.table import Table

COLUMNS = [("rank", "#"), ("model", "model"), ("robust_iou", "robust IoU"), ("corrupted_iou", "corrupted IoU"),
           ("clean_iou", "clean IoU"), ("adversarial_robustness", "rel. adv. rob."),
           ("corruption_robustness", "rel. corr. rob."), ("flags", "flags")]
SCORE_KEYS = (*scores.HEADLINE_SCORES, *scores.RELATIVE_SCORES)


def _cell(row: dict[str, Any], key: str, markup: bool = True) -> str:
    from rich.markup import escape

    v = row.get(key)
    if key in SCORE_KEYS:
        sd = (row.get("seed_spread") or {}).get(key)
        return scores.fmt(v) + (f" ±{sd['sd']:.3f}" if sd else "")  # ± the seed-to-seed standard deviation
    if key == "flags":
        text = ", ".join(v or [])
        return f"[red]{text}[/red]" if markup and text else text
    if v is None:
        return ""
    return escape(str(v)) if markup else str(v)  # "m [pgd-at]" is not markup


def _standing(protocol_id: str) -> tuple[bool, str | None]:
    """Whether a registered protocol is a draft (its reference leaderboard is being built), and
    the id its tier name now means when it is an earlier released version; an unknown (plugin's,
    variant) protocol is neither."""
    from ..plugins import get_registry

    try:
        reg = get_registry()
        p = reg.protocol(protocol_id)
        now = reg.protocol(p.name)
    except Exception:  # noqa: BLE001 - not a protocol of this registry
        return False, None
    return bool(p.draft), (now.id if now.version > p.version and not p.draft else None)


def _draft(protocol_id: str) -> bool:
    return _standing(protocol_id)[0]


def draft_note(protocol_id: str | None, n_rows: int) -> str | None:
    """A line for statistics read from a draft protocol's entries, or ``None``."""
    if not protocol_id or not _draft(protocol_id):
        return None
    return (f"draft protocol {protocol_id}: its reference leaderboard is still being built ({n_rows} architectures "
            f"so far); these readings will change as entries are added")


def _title(group: dict[str, Any]) -> str:
    head = next((e["scores"]["headline"]["label"] for e in group["entries"] if e.get("scores")), "8/255")
    draft, now = _standing(group["protocol_id"])
    status = (f" [draft protocol: its reference leaderboard is still being built, {len(group['entries'])} rows so far]"
              if draft else f" [earlier version: the tier now means {now}]" if now else "")
    if group.get("label_noise"):
        status += f" — label-noise track: trained on {group['label_noise']} annotations"
    return (f"{group['dataset']} · {group['protocol_id']}{status} (protocol {group['protocol_hash']}), sorted by "
            f"{SORT_TEXT[group['sort']]}; robust IoU: per image the worst attack at {head}; rel.: the study's "
            f"relative robustness; 95 % intervals over the {group['entries'][0]['dataset']['n_images']} test images"
            + ("; ± the standard deviation over an architecture's training seeds (n seeds: its row)"
               if any(len(r.get("seeds") or []) > 1 for r in rows(group)) else ""))


def render_tables(gs: list[dict[str, Any]]) -> list[Table]:
    """One rich table per (protocol, dataset) group, the baselines below the entries."""
    from rich.table import Table

    tables = []
    for g in gs:
        from rich.markup import escape

        t = Table(title=escape(_title(g)), title_justify="left")  # "[draft protocol: ...]" is text, not markup
        for key, head in COLUMNS:
            t.add_column(head, justify="left" if key in ("model", "flags") else "right")
        for r in rows(g):
            t.add_row(*[_cell(r, k) for k, _ in COLUMNS])
        base = baseline_rows(g)
        if base:
            t.add_section()
            for r in base:
                t.add_row(*[f"[dim]{_cell(r, k)}[/dim]" if _cell(r, k) else "" for k, _ in COLUMNS])
        tables.append(t)
    return tables


def render_markdown(gs: list[dict[str, Any]]) -> str:
    """Markdown tables, one per (protocol, dataset) group; an honest line when empty."""
    if not gs:
        return "No entries yet.\n"
    parts = []
    for g in gs:
        lines = [f"**{_title(g)}**", "", "| " + " | ".join(h for _, h in COLUMNS) + " |",
                 "| " + " | ".join("---" if k in ("model", "flags") else "---:" for k, _ in COLUMNS) + " |"]
        lines += ["| " + " | ".join(_cell(r, k, markup=False) for k, _ in COLUMNS) + " |" for r in rows(g)]
        lines += ["| " + " | ".join(f"*{c}*" if (c := _cell(r, k, markup=False)) else "" for k, _ in COLUMNS) + " |"
                  for r in baseline_rows(g)]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


CSV_FIELDS = ["protocol", "protocol_hash", "dataset", "rank", "model"]


def render_csv(gs: list[dict[str, Any]]) -> str:
    """One line per entry; each score as value, ci95_low, ci95_high columns."""
    buf = io.StringIO()
    fields = CSV_FIELDS + [f"{k}{s}" for k in SCORE_KEYS for s in ("", "_ci95_low", "_ci95_high", "_seed_sd")] + \
        ["n_seeds", "flags", "n_images", "weights_sha256"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for g in gs:
        for r in rows(g):
            line = {k: r[k] for k in CSV_FIELDS} | {"flags": " ".join(r["flags"]), "n_images": r["n_images"],
                                                   "weights_sha256": r["weights_sha256"], "n_seeds": len(r["seeds"])}
            for k in SCORE_KEYS:
                block = r[k] or {}
                ci = block.get("ci95") or [None, None]
                sd = r["seed_spread"].get(k) or {}
                line |= {k: block.get("value"), f"{k}_ci95_low": ci[0], f"{k}_ci95_high": ci[1],
                         f"{k}_seed_sd": sd.get("sd")}
            w.writerow(line)
    return buf.getvalue()


def render_json(gs: list[dict[str, Any]]) -> str:
    return json.dumps([{k: g[k] for k in ("protocol_id", "protocol_hash", "dataset", "sort")}
                       | {"rows": rows(g), "baselines": baseline_rows(g)} for g in gs], indent=2) + "\n"


SORT_JS = """for(const t of document.querySelectorAll('table.board')){const hs=t.querySelectorAll('th');
hs.forEach((h,i)=>h.addEventListener('click',()=>{const b=t.tBodies[0],rs=[...b.rows],d=h.dataset.dir==='a'?'d':'a';
hs.forEach(x=>delete x.dataset.dir);h.dataset.dir=d;const k=r=>{const c=r.cells[i],v=c.dataset.v;
return v===undefined?c.textContent:(v===''?-Infinity:parseFloat(v))};rs.sort((p,q)=>{const a=k(p),z=k(q);
const o=typeof a==='number'?a-z:String(a).localeCompare(String(z));return d==='a'?o:-o});rs.forEach(r=>b.appendChild(r))}))}
document.body.dataset.rendered='yes';"""


def render_html(gs: list[dict[str, Any]], links: dict[str, str] | None = None, title: str = "fmbench leaderboard") -> str:
    """A static page: one sortable table per (protocol, dataset) group (click a column head),
    every score with its interval and seed spread, flags with their reasons on hover, the
    baselines below, and each model linked to its report where ``links`` (entry path -> href)
    has one."""
    import html

    from .report_style import GENERATOR, STYLE

    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8>{GENERATOR}<title>{html.escape(title)}</title>"
           f"<style>{STYLE}th{{cursor:pointer}}th[data-dir=a]::after{{content:' ▲'}}th[data-dir=d]::after"
           f"{{content:' ▼'}}</style></head><body><h1>{html.escape(title)}</h1>"]
    if not gs:
        out.append("<p>No entries yet.</p>")
    for g in gs:
        out.append(f"<h2>{html.escape(_title(g))}</h2><table class=board><thead><tr>"
                   + "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS) + "</tr></thead><tbody>")
        reasons = g["flags"]
        for r, e in zip(rows(g), g["entries"]):
            cells = []
            for key, _ in COLUMNS:
                text = html.escape(_cell(r, key, markup=False))
                if key in SCORE_KEYS:
                    v = (r.get(key) or {}).get("value")
                    cells.append(f"<td data-v='{'' if v is None else v}'>{text}</td>")
                elif key == "rank":
                    cells.append(f"<td data-v='{r['rank']}'>{text}</td>")
                elif key == "model":
                    href = (links or {}).get(str(e.get("_path")))
                    cells.append(f"<td><a href='{html.escape(href)}'>{text}</a></td>" if href else f"<td>{text}</td>")
                elif key == "flags":
                    why = " | ".join(f"{f['flag']}: {f['reason']}" for f in reasons.get(r["model"], []))
                    cells.append(f"<td class=flag title='{html.escape(why)}'>{text}</td>")
                else:
                    cells.append(f"<td>{text}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody>")
        base = baseline_rows(g)
        if base:
            out.append("<tfoot>" + "".join("<tr class=dim>" + "".join(
                f"<td>{html.escape(_cell(r, k, markup=False))}</td>" for k, _ in COLUMNS) + "</tr>" for r in base)
                + "</tfoot>")
        out.append("</table>")
    out.append(f"<p class=note>{html.escape(scores_note())}</p><script>{SORT_JS}</script></body></html>")
    return "\n".join(out)


def scores_note() -> str:
    """What the columns mean (the README's note on the tables)."""
    return FLAGS_NOTE.strip()


FLAGS_NOTE = ("\nRobust IoU is each test image's lowest IoU over every attack at the headline budget, averaged; "
              "corrupted IoU each image's mean IoU over every corruption, averaged; intervals are 95 % bootstrap "
              "intervals over the test images (docs/metrics.md). The study's relative robustness (IoU under a "
              "condition divided by clean IoU) rewards a model that fails at the reference and is shown beside, "
              "never ranked by default. *undertrained*: clean IoU more than 0.05 below the best of its table, so "
              "its robustness says little about its architecture (*architecture-limited* instead where its own "
              "training record shows it had plateaued). *other-data*: trained on another version of the "
              "dataset (the shipped `unet-small` learns from the realistic `nucleus@2`). *below-classical*: its clean or "
              "corrupted IoU is below Otsu's threshold on the same images. *unpinned-weights*: evaluated with a "
              "checkpoint no registry pins by hash, so only its contributor's file can recheck it. *masking-unchecked*: "
              "adversarially trained, and no check for gradient masking of its weights is on record, so its adversarial "
              "scores are an upper bound (*gradient-masking*: a check found signs of it). Baseline rows (all foreground, all background, "
              "Otsu's threshold) are measured on the same inputs and never attacked.\n")

