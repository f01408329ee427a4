"""``fmbench campaign``: a grid of evaluations, here or on a SLURM cluster (:mod:`fmbench.campaign`)."""

from __future__ import annotations

import click

from ..errors import ResultError
from ..protocol import DEFAULT_TIER
from . import BATCH_SIZE, cli, names


@cli.command("campaign")
@click.option("--models", required=True, metavar="A,B", help="Models (registered names or references).")
@click.option("--datasets", required=True, metavar="A,B", help="Datasets.")
@click.option("--tier", default=DEFAULT_TIER, show_default=True, help="Protocol tier or id.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder of the results.")
@click.option("--n-images", type=click.IntRange(min=1), help="Fewer/more images (a protocol variant).")
@click.option("--image-size", type=click.IntRange(min=32), help="Image size (a protocol variant).")
@click.option("--corruptions", "only_corruptions", metavar="A,B", help="Only these corruptions ('none').")
@click.option("--attacks", "only_attacks", metavar="A,B", help="Only these attack families ('none').")
@click.option("--batch-size", type=BATCH_SIZE, default=8, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--executor", type=click.Choice(["local", "submitit-local", "debug", "slurm"]), default="local",
              show_default=True, help="Where the cells run (submitit ones: pip install 'fmbench[cluster]').")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="Cells running at once (submitit executors; a SLURM array's parallelism).")
@click.option("--slurm-partition")
@click.option("--slurm-gpus", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--slurm-minutes", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--entries", "entries_dir", type=click.Path(file_okay=False),
              help="Then build a leaderboard entry from every finished result into this folder.")
def campaign_cmd(models, datasets, tier, out_dir, n_images, image_size, only_corruptions, only_attacks, batch_size,
                 device, executor, parallel, slurm_partition, slurm_gpus, slurm_minutes, entries_dir):
    """Evaluate every model on every dataset; finished cells are skipped, killed ones resume."""
    from ..campaign import Slurm, grid, merge, run

    overrides = {"n_images": n_images, "image_size": image_size,
                 "corruptions": names(only_corruptions) if only_corruptions else None,
                 "attacks": names(only_attacks) if only_attacks else None}
    from ..files import check_writable

    model_list, dataset_list = (list(dict.fromkeys(names(x))) for x in (models, datasets))  # duplicates: one cell
    if not model_list or not dataset_list:
        raise click.BadParameter("names no model" if not model_list else "names no dataset",
                                 param_hint="'--models'" if not model_list else "'--datasets'")
    check_writable(out_dir, folder_itself=True)  # before any cell runs
    cells = grid(model_list, dataset_list, tier, out_dir, overrides, batch_size, device)
    statuses = run(cells, executor, parallel, logs=f"{out_dir}/.submitit",
                   slurm=Slurm(partition=slurm_partition, gpus=slurm_gpus, minutes=slurm_minutes))
    for s in statuses:
        extra = f" (clean IoU {s['clean_iou']:.3f})" if s.get("clean_iou") is not None else ""
        click.echo(f"{s['status']:8s} {s['cell']}: {s['out']}{extra}{': ' + s['error'] if 'error' in s else ''}")
    failed = [s for s in statuses if s["status"] == "failed"]
    if entries_dir:
        written = merge(cells, entries_dir)
        click.echo(f"{len(written)} leaderboard entries written to {entries_dir}")
    if failed:
        raise ResultError(f"{len(failed)} of {len(statuses)} cells failed (see above); run the campaign again to "
                          f"retry them")
