"""``fmbench zoo install PATH...``: the reference zoo's exact weights, from files a user has."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import CheckpointError
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
