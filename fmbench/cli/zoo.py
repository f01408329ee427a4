"""``fmbench zoo install PATH...``: the reference zoo's exact weights, from files a user has."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import CheckpointError
from ..protocol import DEFAULT_TIER
from . import cli, registry


@cli.group("zoo")
def zoo_group() -> None:
    """The reference zoo's weights (docs/zoo.md)."""


@zoo_group.command("install")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace weights already in the cache that are not the registered ones.")
def zoo_install(paths: tuple[Path, ...], overwrite: bool) -> None:
    """Install reference checkpoints (files, or folders of MODEL__DATASET.pt) into the user cache,
    each checked against the registered state sha256 first."""
    from ..weights import install

    _, reg = registry()
    rows = install(list(paths), reg, overwrite=overwrite)
    if not rows:
        raise CheckpointError(f"no checkpoint (*.pt) in {', '.join(str(p) for p in paths)}")
    for f, ok, what in rows:
        click.echo(f"{'ok ' if ok else 'NOT'} {f}: {what}")
    bad = [f for f, ok, _ in rows if not ok]
    if bad:
        raise CheckpointError(f"{len(bad)} of {len(rows)} files were not installed (see above)")


@zoo_group.command("export")
@click.argument("model")
@click.option("--dataset", "dataset_ref", required=True, help="The dataset whose registered weights to export.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Package folder to write.")
@click.option("--tier", default=DEFAULT_TIER, show_default=True, help="Protocol whose image size, normalisation and scores go in.")
@click.option("--overwrite", is_flag=True)
def zoo_export(model: str, dataset_ref: str, out: str, tier: str, overwrite: bool) -> None:
    """Write a registered model's weights as a bioimage.io model package (TorchScript, its
    preprocessing declared, test tensors, its leaderboard scores under config.fmbench)."""
    from ..bioimageio import export_package
    from ..leaderboard import load_entries
    from ..leaderboard.store import default_dir

    _, reg = registry()
    protocol = reg.protocol(tier)
    ref = protocol.dataset_ref(dataset_ref)
    entry = next((e for e in load_entries(str(default_dir()), reg)
                  if e["model"]["ref"] == model and e["dataset"]["ref"] == ref and e["protocol"]["hash"] == protocol.hash
                  and (e["model"]["training"].get("seed") or 0) == 0
                  and (e["model"]["training"].get("defense") or "none") == "none"), None)
    rdf = export_package(model, dataset_ref, out, tier=tier, entry=entry, overwrite=overwrite)
    status: str
    try:
        from bioimageio.spec import load_description

        status = load_description(str(rdf)).validation_summary.status
    except ImportError:
        status = "not validated (pip install 'fmbench[bioimageio]')"
    click.echo(f"bioimage.io package written to {rdf.parent} (format: {status}; scores: "
               f"{'from ' + entry['protocol']['id'] + ' entry' if entry else 'none, no leaderboard entry'})")
