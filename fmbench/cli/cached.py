"""``fmbench cache ls|clear``: the results cached by what a run measures (:mod:`fmbench.cache`)."""

from __future__ import annotations

import json

import click

from . import cli, console


@cli.group("cache")
def cache_group() -> None:
    """Results cached by what a run measures (an identical run reuses them)."""


@cache_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def cache_ls(as_json: bool) -> None:
    """List the cached results, newest first."""
    from rich.table import Table

    from ..cache import listing, results_dir

    rows = listing()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no cached results in {results_dir()}")
        return
    table = Table(title=f"{len(rows)} cached results in {results_dir()}")
    for col in ("key", "model", "dataset", "protocol", "finished", "clean IoU"):
        table.add_column(col)
    for r in rows:
        if r.get("damaged"):
            table.add_row(r["key"][:12], "(unreadable)", "", "", "", "")
            continue
        clean = "—" if r["clean_iou"] is None else f"{r['clean_iou']:.3f}"
        table.add_row(r["key"][:12], str(r["model"]), str(r["dataset"]), str(r["protocol"]), str(r["finished"]), clean)
    console().print(table)


@cache_group.command("clear")
@click.argument("keys", nargs=-1)
def cache_clear(keys: tuple[str, ...]) -> None:
    """Remove cached results: all of them, or those whose key starts with one of KEYS."""
    from ..cache import clear, results_dir
    from ..errors import ResultError

    if any(not k.strip() for k in keys):
        raise click.BadParameter("an empty key would match every cached result (give no KEYS to clear them all)",
                                 param_hint="KEYS")
    n = clear(list(keys) if keys else None)
    if keys and not n:
        raise ResultError(f"no cached result's key starts with {', '.join(keys)} (`fmbench cache ls` lists them)")
    click.echo(f"removed {n} cached result{'s' if n != 1 else ''} from {results_dir()}")
