"""``fmbench report``: a self-contained HTML page of one result (or leaderboard entry)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ResultError
from ..leaderboard.store import default_dir
from . import cli, console, registry


@cli.command("report")
@click.argument("result", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Entries to show it among (default: ./leaderboard, else the reference entries installed with fmbench).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="The model's checkpoint, for the example images (registered weights are found by themselves).")
@click.option("--no-images", is_flag=True, help="Leave out the example images (no model is loaded).")
@click.option("--trust", multiple=True, metavar="REF",
              help="Import this code-named model (module:Attr, file.py:Attr) for the example images; the file's "
                   "reference alone is never imported.")
@click.option("--overwrite", is_flag=True)
def report_cmd(result, out, directory, checkpoint, no_images, overwrite, trust=()):
    """Write one HTML file a person reads in a minute: headline scores with intervals, baselines
    and flags, IoU against severity and budget beside the leaderboard's models, example images,
    the self-checks explained, and where the model ranks."""
    from ..files import atomic_write, read_json
    from ..leaderboard import load_entries
    from ..report import example_panel, report_html

    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise ResultError(f"{out_path} already exists", hints=("overwrite",))
    doc = read_json(result)
    if not isinstance(doc, dict) or doc.get("kind") not in ("fmbench-result", "fmbench-leaderboard-entry"):
        raise ResultError(f"{result}: not an fmbench result or leaderboard entry")
    from ..integrity import consistency

    problems = consistency(doc)
    if problems:  # a report shows what the file says: an inconsistent file is refused, not explained
        raise ResultError(f"{result}: {problems[0]}")
    _, reg = registry()
    entries = load_entries(directory or str(default_dir()), reg)
    panel = None if no_images else example_panel(doc, checkpoint=checkpoint, trust=trust)
    page = report_html(doc, entries, panel=panel)
    atomic_write(out_path, lambda f: f.write(page), mode="w", replace=overwrite)
    click.echo(f"report written to {out_path}" + ("" if panel is None or panel[0] else f" ({panel[1]})"))


def label_noise_study(directory: str, model: str, dataset_ref: str | None, tier: str | None, out: str,
                       as_json: bool) -> None:
    import json

    from rich.table import Table

    from ..leaderboard import load_entries, select
    from ..noise_plot import plot
    from ..noise_study import SCORES, study

    if not dataset_ref:
        raise ResultError("--label-noise needs --dataset (one dataset at a time)")
    folder = Path(directory) / "label-noise" if (Path(directory) / "label-noise").is_dir() else Path(directory)
    _, reg = registry()
    entries = select(load_entries(str(folder), reg), dataset=dataset_ref, tier=tier)
    # the dataset as the entries name it (--dataset nucleus selects the nucleus@2 entries)
    refs = sorted({e["dataset"]["ref"] for e in entries if e["model"]["ref"] == model})
    data = study(entries, model, refs[0] if len(refs) == 1 else dataset_ref)
    if not data["kinds"]:
        raise ResultError(f"no label-noise entry of {model} on {dataset_ref} in {folder} besides exact labels: nothing "
                          f"to compare (the study's entries: leaderboard/label_noise.py, docs/label-noise.md)")
    png = plot(data, out)
    if as_json:
        click.echo(json.dumps(data | {"png": png}, indent=2))
        return
    if data["floor"] is None:
        click.echo("training noise not measured (no exact-label training with another seed): a difference may be "
                   "training luck; read it as a lead")
    else:
        click.echo("training-noise floor (largest |Δ| of each exact-label training, seeds "
                   + ", ".join(str(t["seed"]) for t in data["training_noise"]) + ", against the mean of the others): "
                   + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in data["floor"].items()))
    if data.get("luck_bar") and data.get("luck_bar_same_seed"):
        click.echo(f"training-luck bars (95 %, calibrated for exact-label training luck; against the exact-label mean / "
                   f"against seed {data['seed']}'s training): " + ", ".join(
                       f"{k.replace('_', ' ')} {v:.3f} / {data['luck_bar_same_seed'][k]:.3f}"
                       for k, v in data["luck_bar"].items()) + " — a significant difference inside either is a lead")
    for kind in data["kinds"]:
        t = Table(title=f"{model} on {dataset_ref} · {data['protocol_id']}: {kind['kind']} noise, severity "
                        f"{kind['severity']:g}; Δ against exact labels \\[paired 95 % interval], Wilcoxon p "
                        f"Holm-corrected over rates, effect = rank-biserial r", title_justify="left")
        t.add_column("rate", justify="right")
        for k in SCORES:
            t.add_column(k.replace("_", " "), justify="right")
        for row in kind["rows"]:
            cells = []
            for k in SCORES:
                v = f"{row[k]['value']:.3f}"
                test = row.get(f"{k}_test")
                if test:
                    mark = " [red]loss[/red]" if test["significant_loss"] else (
                        " [green]gain[/green]" if test["significant_gain"] else "")
                    if mark and test.get("beyond_luck") is not None:
                        mark += "" if test["beyond_luck"] else " (lead)"
                    v += (f" (Δ {test['diff']:+.3f} [{test['ci95'][0]:+.3f}, {test['ci95'][1]:+.3f}], "
                          f"p {test['p_holm']:.2g}, r {test['effect']:+.2f}){mark}")
                cells.append(v)
            t.add_row(f"{row['rate']:.0%}", *cells)
        console().print(t)
        safe = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in kind["max_safe_rate"].items())
        click.echo(f"largest rate with no significant loss: {safe}")
        found = [f"{k.replace('_', ' ')} {'loss' if t['significant_loss'] else 'gain'} at {row['rate']:.0%}"
                 + ("" if t.get("beyond_luck") is None else " beyond luck" if t["beyond_luck"]
                    else " (a lead: inside the luck bars)")
                 for k in SCORES for row in kind["rows"][1:] for t in [row[f"{k}_test"]]
                 if t["significant_loss"] or t["significant_gain"]]
        click.echo("significant: " + ("; ".join(found) or "none"))
        if kind.get("first_loss_beyond_luck"):
            click.echo("first loss beyond the luck bars: " + ", ".join(
                f"{k.replace('_', ' ')} {'none' if v is None else format(v, '.0%')}"
                for k, v in kind["first_loss_beyond_luck"].items()))
    if data.get("replicates"):
        t = Table(title=f"replicates: a setting trained again with another seed, against its seed's exact-label "
                        f"training and the exact-label mean; the seed-{data['seed']} finding confirmed when both "
                        f"intervals lie on its side of 0", title_justify="left")
        for c in ("setting", "seed", "score", "value", "against its seed", "against the mean", "verdict"):
            t.add_column(c)
        for r in data["replicates"]:
            for k in ("clean_iou", "corrupted_iou", "robust_iou"):
                x, sign = r[k], r[k]["grid"]["finding"]
                what = "loss" if sign < 0 else "gain"
                verdict = "—" if x["confirms"] is None else f"confirms the {what}" if x["confirms"] else \
                    f"reverses the {what}" if x["reverses"] else f"does not confirm the {what}"
                t.add_row(f"{r['kind']} {r['rate']:.0%} ({r['severity']:g})", str(r["seed"]), k.replace("_", " "),
                          f"{x['value']:.3f}", *(f"Δ {u['diff']:+.3f} [{u['ci95'][0]:+.3f}, {u['ci95'][1]:+.3f}]"
                                                 for u in (x["own_seed"], x["mean"])), verdict)
        console().print(t)
    click.echo(f"plot written to {png}")
