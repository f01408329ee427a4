"""``fmbench analyze``: the corruption-adversarial correlation across entries (or the images of
one), how much of a ranking is architecture (``--seeds``), each corruption group against each
attack (``--families``), and the label-noise study (``--label-noise``)."""

from __future__ import annotations

import json

import click

from ..errors import ResultError
from ..leaderboard.store import default_dir
from . import SEED, cli, console, registry
from .board import select_entries


@cli.command("analyze")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Entries folder (default: ./leaderboard, else the reference entries installed with fmbench).")
@click.option("--dataset", "dataset_ref", help="Only entries on this dataset (default: all, pooled).")
@click.option("--tier", help="Only entries under this protocol (name or id).")
@click.option("--within", "within", metavar="MODEL", help="Correlate across the images of this model's entry.")
@click.option("--out", default="analysis.png", show_default=True, type=click.Path(dir_okay=False), help="Scatter PNG.")
@click.option("--n-boot", type=click.IntRange(min=100), default=2000, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the correlations as JSON.")
@click.option("--label-noise", "label_noise", is_flag=True,
              help="Instead: the label-noise study of --model on --dataset (each rate against exact labels; "
                   "entries in leaderboard/label-noise).")
@click.option("--model", "model_name", default="unet-small", show_default=True, help="With --label-noise.")
@click.option("--seeds", "seeds", is_flag=True,
              help="Instead: how much of the ranking is architecture and how much training luck, from the "
                   "architectures trained with several seeds (one dataset).")
@click.option("--families", "families", is_flag=True,
              help="Instead: each corruption group (noise, blur, artefacts) against each attack, plain and with "
                   "clean IoU held fixed (one dataset, at least 4 models).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def analyze_cmd(directory, dataset_ref, tier, within, out, n_boot, seed, as_json, seeds, label_noise=False,
                model_name="unet-small", families=False, overwrite=False):
    """Spearman and Pearson correlation between corruption robustness (overall and per family)
    and adversarial robustness across entries of one protocol, with bootstrap 95 % CIs and
    p-values; writes a labelled scatter plot."""
    from ..files import refuse_existing

    if not (seeds or families):  # those print tables only; the others write --out
        refuse_existing(out, overwrite)
    directory = directory or str(default_dir())
    from ..analysis import across_entries, correlation_table, scatter, within_entry
    from ..leaderboard import load_entries, model_label

    _, reg = registry()
    if label_noise:
        from .report import label_noise_study

        label_noise_study(directory, model_name, dataset_ref, tier, out, as_json)
        return
    entries = select_entries(load_entries(directory, reg), dataset_ref, tier)
    if seeds:
        from ..agreement import agreement_table, seed_agreement

        agreement = seed_agreement(entries)
        if as_json:
            click.echo(json.dumps(agreement, indent=2))
            return
        console().print(agreement_table(agreement))
        _draft_line(agreement["protocol_id"], len(agreement["architectures"]))
        return
    if families:
        from ..families import family_matrix, family_table

        matrix = family_matrix(entries, n_boot=n_boot, seed=seed)
        if as_json:
            click.echo(json.dumps(matrix, indent=2))
        else:
            console().print(family_table(matrix))
            _draft_line(matrix["protocol_id"], matrix["n_models"])
        return
    if within:
        hits = [e for e in entries if within in (e["model"]["ref"], model_label(e))]
        if len(hits) != 1:
            raise ResultError(f"--within {within}: {len(hits)} matching entries (narrow with --dataset/--tier)")
        data = within_entry(hits[0], n_boot=n_boot, seed=seed)
    else:
        data = across_entries(entries, n_boot=n_boot, seed=seed)
    path = scatter(data, out)
    if as_json:
        click.echo(json.dumps({k: v for k, v in data.items()} | {"png": str(path)}, indent=2))
    else:
        console().print(correlation_table(data))
        _draft_line(data["protocol_id"], len(data["labels"]) if data.get("scope") == "entries" else 1)
        click.echo(f"scatter plot written to {path}")


def _draft_line(protocol_id: str | None, n_rows: int) -> None:
    from rich.markup import escape

    from ..leaderboard.render import draft_note

    note = draft_note(protocol_id, n_rows)
    if note:
        console().print(f"[yellow]{escape(note)}[/yellow]")
