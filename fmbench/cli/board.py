"""The leaderboard commands: ``leaderboard`` (rank, render, ``validate``, ``recheck``),
``compare`` and ``analyze``."""

from __future__ import annotations

import math

import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import click

from ..errors import ResultError
from ..leaderboard.store import default_dir
from ..protocol import DEFAULT_TIER
from . import SEED, cli, console, names, registry


@cli.group("leaderboard", invoke_without_command=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Entries folder (default: ./leaderboard, else the reference entries installed with fmbench).")
@click.option("--dataset", "dataset_ref", help="Only entries on this dataset.")
@click.option("--tier", help="Only entries under this protocol (tier name such as quick, or id quick-v1).")
@click.option("--sort", default="robust", show_default=True,
              type=click.Choice(["robust", "corrupted", "clean", "adversarial", "corruption"]),
              help="robust, corrupted, clean: IoU (absolute); adversarial, corruption: the study's relative robustness.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "markdown", "csv", "json", "html"]),
              help="html: a static, sortable page with a report per entry (needs --out FOLDER).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="--format html: the folder to write index.html and reports/ into.")
@click.option("--update-readme", is_flag=True, help="Regenerate README.md's leaderboard section from the entries.")
@click.option("--readme", default="README.md", show_default=True, type=click.Path(dir_okay=False),
              help="README updated by --update-readme.")
@click.pass_context
def leaderboard_group(ctx, directory, dataset_ref, tier, sort, fmt, update_readme, readme, out_dir=None):
    """Rank the leaderboard entries (one table per protocol and dataset: entries under
    different protocol hashes are never ranked together); `validate` checks them."""
    if ctx.invoked_subcommand is not None:
        return
    directory = directory or str(default_dir())
    from ..leaderboard import (
        groups,
        load_entries,
        render_csv,
        render_json,
        render_markdown,
        render_tables,
    )
    from ..leaderboard.store import load_baselines
    from ..readme import update_readme as upd

    _, reg = registry()
    entries = load_entries(directory, reg)
    base = load_baselines(directory)[0]
    if update_readme:
        track = Path(directory) / "label-noise"
        noise = load_entries(str(track), reg) if track.is_dir() else []
        changed = upd(readme, entries, base, noise)
        click.echo(f"{readme} {'updated' if changed else 'already up to date'} ({len(entries)} entries)")
        return
    gs = groups(select_entries(entries, dataset_ref, tier), sort, base)
    rendered = {"markdown": render_markdown, "csv": render_csv, "json": render_json}
    if fmt in rendered and out_dir:  # a file in the --out folder, never over one
        from ..files import atomic_write, check_writable

        target = Path(out_dir) / f"leaderboard.{ {'markdown': 'md'}.get(fmt, fmt) }"
        if target.exists():
            raise ResultError(f"{target} already exists; choose another --out folder")
        check_writable(target)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        text = rendered[fmt](gs)
        atomic_write(target, lambda f: f.write(text), mode="w", replace=False)
        click.echo(f"leaderboard written to {target} ({sum(len(g['entries']) for g in gs)} rows)")
        return
    if out_dir and fmt == "table":
        raise ResultError("--out writes a file for --format markdown, csv, json or html; a table is for the terminal")
    if fmt == "html":
        if not out_dir:
            raise ResultError("--format html writes a folder (index.html and a report per entry): pass --out FOLDER")
        index = write_site(Path(out_dir), gs, entries)
        click.echo(f"leaderboard page written to {index} ({sum(len(g['entries']) for g in gs)} rows)")
        return
    if fmt in rendered:
        click.echo(rendered[fmt](gs), nl=False)
    elif not gs:
        known = sorted({str(e["dataset"]["ref"]) for e in entries})
        click.echo(f"no leaderboard entries in {directory}" + (f" match (datasets with entries: {', '.join(known)})"
                                                               if (dataset_ref or tier) and known else ""))
    else:
        out = console()
        for table in render_tables(gs):
            out.print(table)


def _write_text(text: str, f: Any) -> None:
    f.write(text)


def write_site(folder: Path, gs: list[dict[str, Any]], entries: list[dict[str, Any]]) -> Path:
    """index.html (the sortable tables) and reports/NAME.html for every entry shown (without
    example images: the entries' weights need not be here)."""
    from ..files import atomic_write
    from ..leaderboard.render import render_html
    from ..report import report_html

    from ..leaderboard.report_style import GENERATOR

    index = folder / "index.html"
    if index.exists() and GENERATOR not in index.read_text(errors="replace")[:2000]:
        raise ResultError(f"{index} exists and was not written by fmbench; choose another --out folder")
    (folder / "reports").mkdir(parents=True, exist_ok=True)
    links: dict[str, str] = {}
    for g in gs:
        for e in g["entries"]:
            for member in e.get("members") or [e]:
                name = Path(str(member["_path"])).stem
                atomic_write(folder / "reports" / f"{name}.html", partial(_write_text, report_html(member, entries)),
                             mode="w")
                links.setdefault(str(e["_path"]), f"reports/{name}.html")
    page = render_html(gs, links)
    atomic_write(index, lambda f: f.write(page), mode="w")
    return index


def select_entries(entries, dataset_ref, tier):
    from ..leaderboard import select

    return select(entries, dataset=dataset_ref, tier=tier)


@leaderboard_group.command("validate")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def leaderboard_validate_cmd(directory):
    """Check every entry: the JSON Schema, a registered protocol hash, and summaries that
    agree with the per-condition scores.  One line per problem; exit 1 when any."""
    directory = directory or str(default_dir())
    from ..leaderboard import validate_dir

    _, reg = registry()
    validator, n, problems = validate_dir(directory, reg)
    for p in problems:
        click.echo(p, err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {n} entries in {directory} (schema checked with {validator})", err=True)
        from ..leaderboard.store import TRACK_WEIGHTS, TRACKS

        if (Path(directory) / TRACK_WEIGHTS).is_file() and Path(directory).resolve().name not in TRACKS:
            click.echo(f"note: {directory} holds a track's weights registry ({TRACK_WEIGHTS}) but is not named as a "
                       f"track ({', '.join(TRACKS)}): it was validated as the main board, which accepts registered "
                       f"weights only (a track is known by its folder's name, never by a file in it)", err=True)
        sys.exit(1)
    click.echo(f"{n} entries in {directory} are valid (schema checked with {validator})")


@leaderboard_group.command("recheck")
@click.argument("entry", type=click.Path(dir_okay=False, exists=True))
@click.option("--n-images", type=click.IntRange(min=1), default=2, show_default=True,
              help="Re-evaluate N of the entry's images, drawn at random.")
@click.option("--images", "image_ids", metavar="ID,ID", help="Re-evaluate these images instead.")
@click.option("--seed", type=SEED, help="Seed of the random draw (default: a fresh one, printed).")
@click.option("--trust", multiple=True, metavar="REF",
              help="Allow a model reference that imports or loads code (module:Attr, file.py:Attr, scheme:...).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True),
              help="The checkpoint the entry was made with (its sha256 must match the entry's).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=None,
              help="Largest accepted difference of a condition's mean IoU over those images [default: 0.01].")
def leaderboard_recheck_cmd(entry, n_images, image_ids, seed, trust, checkpoint, tolerance):
    """Re-evaluate some of an entry's images, rebuilt from its structured fields (model,
    arguments, weights, dataset, protocol: no stored command is run), and compare every
    condition's IoU with the entry's per-image scores.  Exit 1 beyond the tolerance."""
    from rich.table import Table

    from ..files import read_json
    from ..integrity import consistency
    from ..leaderboard import RECHECK_TOLERANCE, recheck_compare
    from ..leaderboard.recheck import choose_images, recheck

    if tolerance is not None and not math.isfinite(tolerance):
        raise click.BadParameter(f"{tolerance} is not a finite number", param_hint="'--tolerance'")
    tolerance = RECHECK_TOLERANCE if tolerance is None else tolerance
    doc = read_json(entry)
    if not isinstance(doc, dict) or doc.get("kind") != "fmbench-leaderboard-entry":
        raise ResultError(f"{entry}: not a leaderboard entry (kind {doc.get('kind') if isinstance(doc, dict) else None!r})")
    _, reg = registry()
    from ..leaderboard.store import for_entry, schema_validator, track_weights

    problems = schema_validator()[1](doc) or consistency(doc, reg, for_entry(track_weights(Path(entry).parent), entry))
    if problems:
        raise ResultError(f"{entry}: {problems[0]} (the entry is inconsistent; `fmbench leaderboard validate` lists all)")
    positions = choose_images(doc, n_images, names(image_ids) if image_ids else None, seed)
    chosen = [doc["per_image"]["ids"][p] for p in positions]
    click.echo(f"re-evaluating {', '.join(chosen)} of {entry}", err=True)
    t0 = time.perf_counter()
    rows, problems = recheck_compare(doc, recheck(doc, positions, reg, trust=trust, checkpoint=checkpoint), tolerance)
    table = Table(title=f"{entry}: images {', '.join(chosen)} re-evaluated in {time.perf_counter() - t0:.0f} s")
    for col in ("condition", "entry IoU", "now IoU", "difference"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for cond, a, b, d in rows:
        table.add_row(cond, f"{a:.4f}", f"{b:.4f}", ("[red]" if abs(d) > tolerance else "") + f"{d:+.4f}")
    console().print(table)
    worst = max((abs(r[3]) for r in rows), default=0.0)
    for p in problems:
        click.echo(f"{entry}: {p}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{entry}: {len(rows)} conditions reproduced within {tolerance} on {len(chosen)} images "
               f"(largest difference {worst:.2g})")


@cli.command("compare")
@click.argument("result", type=click.Path(dir_okay=False, exists=True))
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Entries folder (default: ./leaderboard, else the reference entries installed with fmbench).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare_cmd(result, directory, as_json):
    """Where a result (or entry) would rank among the entries with its protocol hash and
    dataset, per score and family, with differences to its neighbours and to the best."""
    directory = directory or str(default_dir())
    from ..files import read_json
    from ..leaderboard import compare, compare_table, load_entries

    _, reg = registry()
    data = compare(read_json(result), load_entries(directory, reg))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        console().print(compare_table(data))


@leaderboard_group.command("baselines")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--tier", default=DEFAULT_TIER, show_default=True, help="Protocol tier or id.")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Entries folder (default: ./leaderboard, else the reference entries installed with fmbench).")
@click.option("--check", "n_check", type=click.IntRange(min=1), metavar="N",
              help="Re-measure the first N images and compare with the file instead of writing it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing baselines file.")
def leaderboard_baselines_cmd(dataset_ref, tier, directory, n_check, overwrite):
    """Measure the trivial baselines (all foreground, all background) and Otsu's threshold at
    the reference condition and under every corruption of a protocol, on its test images, and
    write them to DIR/baselines/ (the leaderboard shows them and flags degenerate entries by them)."""
    directory = directory or "leaderboard"  # written, so never into the installed copy
    from ..baselines import measure
    from ..datasets import open_dataset
    from ..files import read_json, write_json

    pm, reg = registry()
    protocol = reg.protocol(tier)
    dataset_ref = protocol.dataset_ref(dataset_ref)  # `nucleus` under quick-v2 is nucleus@2
    dataset = open_dataset(dataset_ref, protocol.split, protocol.image_size, registry=reg, pm=pm)
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{dataset_ref}__{protocol.id}")
    path = Path(directory) / "baselines" / f"{slug}.json"
    if n_check:
        old = read_json(path)
        new = measure(dataset, dataset_ref, protocol, reg, n_images=n_check)
        if old["per_image"]["ids"][: n_check] != new["per_image"]["ids"]:
            click.echo(f"{path}: its first {n_check} image ids are not the protocol's", err=True)
            sys.exit(1)
        worst = 0.0
        for name, per_cond in new["per_image"]["iou"].items():
            for cid, values in per_cond.items():
                recorded = ((old["per_image"]["iou"].get(name) or {}).get(cid) or [])[: len(values)]
                if len(recorded) != len(values):  # a baseline or condition missing from the file
                    click.echo(f"{path}: {name} under {cid} is missing or short in the file", err=True)
                    sys.exit(1)
                worst = max([worst, *(abs(a - b) for a, b in zip(values, recorded))])
        if worst > 1e-6:
            click.echo(f"{path}: the first {n_check} images differ by up to {worst:.3g} per image", err=True)
            sys.exit(1)
        n_done = len(new["per_image"]["ids"])  # the table may hold fewer than were asked for
        click.echo(f"{path}: {'the first ' if n_done < len(old['per_image']['ids']) else 'all '}{n_done} images "
                   f"reproduced (largest difference {worst:.2g})")
        return
    if path.exists() and not overwrite:
        raise ResultError(f"{path} already exists", hints=("overwrite",))
    t0 = time.perf_counter()
    doc = measure(dataset, dataset_ref, protocol, reg)
    write_json(path, doc)
    summary = ", ".join(f"{k} {v['clean_iou']:.3f}" for k, v in doc["summary"].items())
    click.echo(f"baselines written to {path} ({doc['dataset']['n_images']} images, {time.perf_counter() - t0:.0f} s; "
               f"clean IoU: {summary})")


@leaderboard_group.command("rescore")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False, exists=True))
def leaderboard_rescore_cmd(paths):
    """Bring entries to the current schema: recompute their scores and intervals from their
    per-image IoU (nothing is re-evaluated; every other field is kept)."""
    from ..files import read_json, write_json
    from ..integrity import consistency
    from ..leaderboard.entry import rescore
    from ..leaderboard.store import for_entry, track_weights

    _, reg = registry()
    done = {}
    for p in paths:  # every file checked before any is written: scores recomputed, nothing else vouched for
        new = rescore(read_json(p))
        problems = consistency(new, reg, for_entry(track_weights(Path(p).parent), p))
        if problems:
            raise ResultError(f"{p}: {problems[0]} (an inconsistent entry is not rescored; `fmbench leaderboard "
                              f"validate` lists every problem)")
        done[p] = new
    for p, new in done.items():
        write_json(p, new)
    click.echo(f"{len(paths)} entries rescored")
