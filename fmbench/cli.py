"""The ``fmbench`` command line.

Library errors (:class:`fmbench.errors.FmbenchError`) become one line on stderr and exit code
1; ``--debug`` shows the traceback instead.  Usage errors exit with 2.
"""

from __future__ import annotations

import json
import shlex
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from . import __version__
from .errors import DataError, FmbenchError, ResultError

STATE = {"debug": False}


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # a pipe or a log file gets a table wide enough not to fold its rows
    return Console(stderr=stderr, width=None if stream.isatty() else 140)


def _progress(quiet: bool):
    """A rich progress bar with ETA on stderr (nothing when ``quiet``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=_console(stderr=True), disable=quiet,
                    transient=False)


def _registry():
    from .plugins import get_plugin_manager, get_registry

    pm = get_plugin_manager()
    return pm, get_registry(pm)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fmbench")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool):
    """fmbench: how robust is a segmentation network on fluorescence-microscopy images?

    Evaluate a model under the reference condition, controlled microscopy corruptions and
    adversarial attacks with `fmbench eval`; see what is registered with `fmbench list`.
    """
    STATE["debug"] = debug


def open_dataset(ref: str, split: str, image_size: int, registry, pm):
    """A registered dataset by name, or ``scheme:rest`` through the plugins' resolver."""
    if ":" in ref:
        ds = pm.hook.fmbench_resolve_dataset(ref=ref, split=split, image_size=image_size)
        if ds is None:
            from .errors import UnknownNameError

            raise UnknownNameError(f"no plugin handles dataset reference {ref!r}")
        return ds
    spec = registry.dataset(ref)
    if split not in spec.splits:
        raise DataError(f"dataset {ref!r} has no split {split!r} (splits: {', '.join(spec.splits)})")
    return spec.factory(split=split, image_size=image_size)


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _default_out(model: str, dataset: str, protocol_id: str) -> Path:
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{model}__{dataset}__{protocol_id}")
    return Path("fmbench-results") / f"{slug}.json"


@cli.command("eval")
@click.option("--model", "model_ref", required=True, metavar="REF",
              help="Registered model name, module:Attr, file.py:Attr, or scheme:... for a plugin.")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument for the model (repeatable; values are typed as Python literals).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="State dict to load (weights_only).")
@click.option("--random-init", is_flag=True, help="Allow a registered model without trained weights.")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--tier", "--protocol", "tier", default="quick", show_default=True,
              help="Protocol tier (quick, full) or exact id (quick-v1).")
@click.option("--n-images", type=click.IntRange(min=1), help="Evaluate fewer/more images (makes a protocol variant).")
@click.option("--seed", type=int, help="Override the protocol seed (makes a protocol variant).")
@click.option("--image-size", type=click.IntRange(min=32), help="Synthetic image size (makes a protocol variant).")
@click.option("--corruptions", "only_corruptions", metavar="A,B", help="Only these of the protocol's corruptions ('none' for none).")
@click.option("--attacks", "only_attacks", metavar="A,B", help="Only these of the protocol's attack families ('none' for none).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Result JSON (default: fmbench-results/...).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its partial log.")
@click.option("--overwrite", is_flag=True, help="Replace an existing result or partial run.")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON on stdout instead of a table.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--leaderboard-entry", "entry_out", type=click.Path(dir_okay=False),
              help="Also write a leaderboard entry (leaderboard/*.json format) built from the result.")
def eval_cmd(model_ref, model_args, checkpoint, random_init, dataset_ref, tier, n_images, seed, image_size,
             only_corruptions, only_attacks, device, batch_size, out, resume, overwrite, as_json, quiet,
             entry_out=None):
    """Evaluate a model on a dataset under a protocol and write a result JSON."""
    import torch

    from .engine import evaluate, resolve_device
    from .model import load_model, parse_model_args, probe
    from .result import partial_path, summary_table, write_json

    pm, registry = _registry()
    args = parse_model_args(model_args)
    for names, lookup in ((only_corruptions, registry.corruption), (only_attacks, registry.attack)):
        for name in _names(names):
            if name != "none" and not (lookup is registry.attack and "-" in name):
                lookup(name)  # unknown names fail here, with suggestions
    protocol = registry.protocol(tier).customized(
        n_images=n_images, seed=seed, image_size=image_size,
        corruptions=_names(only_corruptions) if only_corruptions else None,
        attacks=_names(only_attacks) if only_attacks else None)
    protocol.validate(registry)
    dataset = open_dataset(dataset_ref, protocol.split, protocol.image_size, registry, pm)
    out_path = Path(out) if out else _default_out(model_ref, dataset_ref, protocol.id)
    log_path = partial_path(out_path)
    if out_path.exists() and not overwrite:
        raise ResultError(f"{out_path} already exists; pass --overwrite to replace it or --out to choose another file")
    if log_path.exists() and not (resume or overwrite):
        raise ResultError(f"an unfinished run exists ({log_path}); pass --resume to continue it or --overwrite to start over")
    if resume and not log_path.exists():
        raise ResultError(f"--resume: no unfinished run at {log_path}")
    if entry_out and Path(entry_out).exists() and not overwrite:
        raise ResultError(f"{entry_out} already exists; pass --overwrite to replace it")
    dev = resolve_device(device)
    torch.manual_seed(protocol.seed)  # a model that draws random weights draws the same ones every run
    loaded = load_model(model_ref, args, registry, pm, checkpoint=checkpoint, dataset=dataset_ref,
                        random_init=random_init)
    loaded.module.to(dev)
    probe(loaded.module, protocol.image_size, dev)

    started = datetime.now(timezone.utc)
    with _progress(quiet) as bar:
        task = bar.add_task(f"{model_ref} · {dataset_ref} · {protocol.id}", total=None)

        def on_progress(done, total, label):
            bar.update(task, completed=done, total=total, description=f"{model_ref} · {label}")

        train_split = (lambda: open_dataset(dataset_ref, "train", protocol.image_size, registry, pm)) \
            if ":" in dataset_ref else None
        result = evaluate(loaded, dataset, dataset_ref, protocol, registry, device=dev, batch_size=batch_size,
                          log_path=log_path, resume=resume and not overwrite, on_progress=on_progress,
                          train_dataset=train_split)
    seconds = result.pop("_seconds")
    result["run"] = {
        "command": _reproducing_command(),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds["total"], 3),
        "seconds_per_condition": {k: round(v, 3) for k, v in seconds["conditions"].items()},
        "host": socket.gethostname(),
        "resumed": bool(resume),
    }
    write_json(out_path, result)
    log_path.unlink(missing_ok=True)
    if entry_out:
        from .leaderboard import build_entry, write_entry

        write_entry(entry_out, build_entry(result), overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        console = _console()
        console.print(summary_table(result))
        for w in result["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {w}")
        console.print(f"result written to {out_path}")
        if entry_out:
            console.print(f"leaderboard entry written to {entry_out}")


@cli.command("list")
@click.argument("kind", type=click.Choice(["models", "datasets", "corruptions", "attacks", "protocols"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(kind, as_json):
    """List registered models, datasets, corruptions, attacks or protocols, with the plugin
    that registered each."""
    from rich.table import Table

    _, registry = _registry()
    rows = []
    for name, spec in sorted(getattr(registry, kind).items()):
        row = {"name": name, "summary": getattr(spec, "summary", getattr(spec, "description", "")), "plugin": spec.plugin}
        if kind == "corruptions":
            row["levels"] = ", ".join(spec.label(lv) for lv in spec.levels)
        elif kind == "attacks":
            row["norms"] = ", ".join(spec.norms)
        elif kind == "models":
            from .model import weights_path

            row["weights"] = ", ".join(ds if weights_path(w).is_file() else f"{ds} (missing)"
                                       for ds, w in sorted(spec.weights.items())) or "—"
            row["params"] = _params(spec)
        elif kind == "protocols":
            row["hash"] = spec.hash
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"registered {kind}", title_justify="left")
    for col in rows[0] if rows else ["name"]:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    _console().print(table)


@cli.command("plugins")
def plugins_cmd():
    """Show loaded plugins, their distributions and the hooks each implements."""
    from rich.table import Table

    from .plugins import distribution_of

    pm, _ = _registry()
    table = Table(title="fmbench plugins", title_justify="left")
    for col in ("plugin", "distribution", "hooks"):
        table.add_column(col)
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda x: x[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        table.add_row(name, distribution_of(name), ", ".join(hooks))
    _console().print(table)


def _reproducing_command(drop_out: bool = False) -> str:
    """This invocation as a command line, without the flags that do not change the result;
    ``drop_out`` also drops ``--out FILE`` (a checkpoint records its training command, and
    must not differ with the place it was written to)."""
    skip = {"--resume", "--overwrite", "--quiet"}
    argv, kept, i = sys.argv[1:], [], 0
    while i < len(argv):
        a = argv[i]
        if drop_out and a == "--out":
            i += 2
            continue
        if not (a in skip or (drop_out and a.startswith("--out="))):
            kept.append(a)
        i += 1
    return shlex.join(["fmbench", *kept])


@cli.command("train")
@click.option("--model", "model_ref", required=True, help="Registered model name or module:Attr.")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE")
@click.option("--dataset", "dataset_ref", required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), help="Override the recipe's number of steps.")
@click.option("--tier", default="quick", show_default=True, help="Protocol whose reference condition and image size are used.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Checkpoint to write.")
@click.option("--half", is_flag=True, help="Store weights as float16 (smaller file).")
@click.option("--defense", default="none", show_default=True, type=click.Choice(["none", "noise-aug", "pgd-at"]),
              help="noise-aug: an SNR drawn per image from the protocol's noise levels; pgd-at: half of each "
                   "batch replaced by L-inf PGD examples (3 steps, eps 4/255). Recorded in the checkpoint.")
@click.option("--resume", is_flag=True, help="Continue from the periodic training state.")
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", is_flag=True)
def train_cmd(model_ref, model_args, dataset_ref, seed, steps, tier, out, half, defense, resume, overwrite, quiet):
    """Train a model with the fixed, seeded recipe and write a checkpoint with metadata."""
    from .model import build_model, parse_model_args
    from .result import write_json
    from .train import Recipe, train

    pm, registry = _registry()
    args = parse_model_args(model_args)
    protocol = registry.protocol(tier)
    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise ResultError(f"{out_path} already exists; pass --overwrite to replace it")
    recipe = Recipe(defense=defense) if steps is None else Recipe(steps=steps, defense=defense)
    import torch

    from .seeding import derive_seed

    torch.manual_seed(derive_seed("init", seed))  # the initial weights are drawn now, not in train()
    module, spec = build_model(model_ref, args, registry, pm)
    ds_train = open_dataset(dataset_ref, "train", protocol.image_size, registry, pm)
    ds_val = open_dataset(dataset_ref, "val", protocol.image_size, registry, pm)
    t0 = time.perf_counter()
    with _progress(quiet) as bar:
        task = bar.add_task(f"train {model_ref} on {dataset_ref}", total=recipe.steps)

        def on_progress(done, total, info):
            desc = f"train {model_ref} · loss {info['loss']:.3f}"
            if "val_iou" in info:
                bar.console.print(f"step {done}: val IoU {info['val_iou']:.4f}")
            bar.update(task, completed=done, description=desc)

        meta = train(module, ds_train, ds_val, model_name=model_ref, model_args={**(spec.defaults if spec else {}), **args},
                     dataset_ref=dataset_ref, protocol=protocol, recipe=recipe, seed=seed, out=out_path,
                     resume=resume, half=half, command=_reproducing_command(drop_out=True),
                     on_progress=on_progress)
    # the training record: the checkpoint's metadata plus what may differ between identical
    # runs (wall time), kept beside the checkpoint so the checkpoint itself stays reproducible
    write_json(Path(str(out_path) + ".json"), meta)
    click.echo(f"checkpoint written to {out_path} (val IoU {meta['val_iou']:.4f}, "
               f"{time.perf_counter() - t0:.0f} s, state sha256 {meta['state_sha256'][:12]})")


@cli.group("corruptions")
def corruptions_group():
    """Look at the registered corruptions (`fmbench list corruptions` lists them)."""


@corruptions_group.command("gallery")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Image of the test split.")
@click.option("--tier", default="quick", show_default=True, help="Protocol whose camera, seed and normalisation are used.")
@click.option("--image-size", type=click.IntRange(min=32), help="Image size (default: the protocol's).")
@click.option("--corruption", "names", multiple=True, help="Only these corruptions (repeatable).")
@click.option("--outline", is_flag=True, help="Draw the (possibly resampled) mask outline in green.")
def gallery_cmd(dataset_ref, out, index, tier, image_size, names, outline):
    """Write a montage of every corruption x severity on one image (rows: corruptions,
    columns: severities), exactly as the engine feeds them to a model."""
    from .gallery import write_gallery

    pm, registry = _registry()
    protocol = registry.protocol(tier)
    for name in names:
        registry.corruption(name)
    dataset = open_dataset(dataset_ref, protocol.split, image_size or protocol.image_size, registry, pm)
    path = write_gallery(out, dataset, dataset_ref, protocol, registry, index=index, names=names, outline=outline)
    click.echo(f"gallery written to {path}")


@cli.group("data")
def data_group():
    """Export a dataset to TIFF files or preview it as a montage."""


def _data_open(dataset_ref, split, image_size, seed):
    from .export import open_with_seed

    pm, registry = _registry()
    return open_with_seed(dataset_ref, split, image_size, seed, registry, pm, open_dataset)


@data_group.command("export")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to create.")
@click.option("--n", "n", type=click.IntRange(min=1), help="Export the first N images (default: the whole split).")
@click.option("--format", "fmt", default="float32", show_default=True, type=click.Choice(["float32", "uint16"]))
@click.option("--seed", type=int, help="Generator seed of a synthetic dataset (default: its own, 0).")
@click.option("--image-size", type=click.IntRange(min=32), default=256, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def data_export_cmd(dataset_ref, split, out, n, fmt, seed, image_size, overwrite):
    """Write images (TIFF), masks (uint8 TIFF) and manifest.json with sha256 per file."""
    from .export import export

    dataset = _data_open(dataset_ref, split, image_size, seed)
    manifest = export(dataset, out, n=n, fmt=fmt, overwrite=overwrite)
    click.echo(f"{manifest['n']} images written to {out}")


@data_group.command("preview")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--n", "n", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--seed", type=int, help="Generator seed of a synthetic dataset (default: its own, 0).")
@click.option("--image-size", type=click.IntRange(min=32), default=256, show_default=True)
@click.option("--tier", default="quick", show_default=True, help="Protocol whose reference condition is shown.")
def data_preview_cmd(dataset_ref, out, n, split, seed, image_size, tier):
    """Montage PNG: each image at the reference condition above its noise-free version with
    the mask outline."""
    from .export import preview

    _, registry = _registry()
    protocol = registry.protocol(tier)
    dataset = _data_open(dataset_ref, split, image_size, seed)
    preview(dataset, out, n=n, reference=(protocol.camera, protocol.reference_snr, protocol.seed))
    click.echo(f"preview written to {out}")


@cli.group("leaderboard", invoke_without_command=True)
@click.option("--dir", "directory", default="leaderboard", show_default=True, type=click.Path(file_okay=False))
@click.option("--dataset", "dataset_ref", help="Only entries on this dataset.")
@click.option("--tier", help="Only entries under this protocol (tier name such as quick, or id quick-v1).")
@click.option("--sort", default="adversarial", show_default=True, type=click.Choice(["adversarial", "corruption", "clean"]))
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "markdown", "csv", "json"]))
@click.option("--update-readme", is_flag=True, help="Regenerate README.md's leaderboard section from the entries.")
@click.option("--readme", default="README.md", show_default=True, type=click.Path(dir_okay=False),
              help="README updated by --update-readme.")
@click.pass_context
def leaderboard_group(ctx, directory, dataset_ref, tier, sort, fmt, update_readme, readme):
    """Rank the leaderboard entries (one table per protocol and dataset: entries under
    different protocol hashes are never ranked together); `validate` checks them."""
    if ctx.invoked_subcommand is not None:
        return
    from .leaderboard import groups, load_entries, render_csv, render_json, render_markdown, render_tables, update_readme as upd

    _, registry = _registry()
    entries = load_entries(directory, registry)
    if update_readme:
        changed = upd(readme, entries)
        click.echo(f"{readme} {'updated' if changed else 'already up to date'} ({len(entries)} entries)")
        return
    gs = groups(select_entries(entries, dataset_ref, tier), sort)
    if fmt == "markdown":
        click.echo(render_markdown(gs), nl=False)
    elif fmt == "csv":
        click.echo(render_csv(gs), nl=False)
    elif fmt == "json":
        click.echo(render_json(gs), nl=False)
    elif not gs:
        click.echo(f"no leaderboard entries in {directory}" + (" match" if dataset_ref or tier else ""))
    else:
        console = _console()
        for table in render_tables(gs):
            console.print(table)


def select_entries(entries, dataset_ref, tier):
    from .leaderboard import select

    return select(entries, dataset=dataset_ref, tier=tier)


@leaderboard_group.command("validate")
@click.argument("directory", default="leaderboard", type=click.Path(file_okay=False))
def leaderboard_validate_cmd(directory):
    """Check every entry: the JSON Schema, a registered protocol hash, and summaries that
    agree with the per-condition scores.  One line per problem; exit 1 when any."""
    from .leaderboard import validate_dir

    _, registry = _registry()
    validator, n, problems = validate_dir(directory, registry)
    for p in problems:
        click.echo(p, err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {n} entries in {directory} (schema checked with {validator})", err=True)
        sys.exit(1)
    click.echo(f"{n} entries in {directory} are valid (schema checked with {validator})")


@leaderboard_group.command("recheck")
@click.argument("entry", type=click.Path(dir_okay=False, exists=True))
@click.option("--n-images", type=click.IntRange(min=1), default=2, show_default=True,
              help="Re-evaluate the entry's first N images.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=None,
              help="Largest accepted difference of a condition's mean IoU over those images [default: 0.01].")
def leaderboard_recheck_cmd(entry, n_images, tolerance):
    """Re-run an entry's recorded `fmbench eval` command on its first N images and compare
    every condition's IoU with the entry's per-image scores.  Exit 1 beyond the tolerance."""
    import subprocess
    import tempfile

    from rich.table import Table

    from .leaderboard import RECHECK_TOLERANCE, recheck_command, recheck_compare
    from .result import read_json

    tolerance = RECHECK_TOLERANCE if tolerance is None else tolerance
    doc = read_json(entry)
    if doc.get("kind") != "fmbench-leaderboard-entry":
        raise ResultError(f"{entry}: not a leaderboard entry (kind {doc.get('kind')!r})")
    with tempfile.TemporaryDirectory(prefix="fmbench-recheck-") as tmp:
        args = recheck_command(doc, n_images, Path(tmp) / "result.json")
        if "--checkpoint" in args:
            ckpt = Path(args[args.index("--checkpoint") + 1])
            if not ckpt.exists():
                train = (doc["model"].get("training") or {}).get("command")
                raise ResultError(f"{entry}: checkpoint {ckpt} does not exist"
                                  + (f"; make it with: {train} --out {shlex.quote(str(ckpt))}" if train else ""))
        click.echo("$ fmbench " + shlex.join(args), err=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "fmbench", *args], stdout=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ResultError(f"{entry}: the re-evaluation failed (exit {proc.returncode})")
        rows, problems = recheck_compare(doc, read_json(Path(tmp) / "result.json"), tolerance)
    table = Table(title=f"{entry}: first {n_images} images re-evaluated in {time.perf_counter() - t0:.0f} s")
    for col in ("condition", "entry IoU", "now IoU", "difference"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for cond, a, b, d in rows:
        table.add_row(cond, f"{a:.4f}", f"{b:.4f}", ("[red]" if abs(d) > tolerance else "") + f"{d:+.4f}")
    _console().print(table)
    worst = max((abs(r[3]) for r in rows), default=0.0)
    for p in problems:
        click.echo(f"{entry}: {p}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{entry}: {len(rows)} conditions reproduced within {tolerance} (largest difference {worst:.2g})")


@cli.command("compare")
@click.argument("result", type=click.Path(dir_okay=False, exists=True))
@click.option("--dir", "directory", default="leaderboard", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare_cmd(result, directory, as_json):
    """Where a result (or entry) would rank among the entries with its protocol hash and
    dataset, per score and family, with differences to its neighbours and to the best."""
    from .leaderboard import compare, compare_table, load_entries
    from .result import read_json

    _, registry = _registry()
    data = compare(read_json(result), load_entries(directory, registry))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        _console().print(compare_table(data))


@cli.command("analyze")
@click.option("--dir", "directory", default="leaderboard", show_default=True, type=click.Path(file_okay=False))
@click.option("--dataset", "dataset_ref", help="Only entries on this dataset (default: all, pooled).")
@click.option("--tier", help="Only entries under this protocol (name or id).")
@click.option("--within", "within", metavar="MODEL", help="Correlate across the images of this model's entry.")
@click.option("--out", default="analysis.png", show_default=True, type=click.Path(dir_okay=False), help="Scatter PNG.")
@click.option("--n-boot", type=click.IntRange(min=100), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the correlations as JSON.")
def analyze_cmd(directory, dataset_ref, tier, within, out, n_boot, seed, as_json):
    """Spearman and Pearson correlation between corruption robustness (overall and per family)
    and adversarial robustness across entries of one protocol, with bootstrap 95 % CIs and
    p-values; writes a labelled scatter plot."""
    from .analysis import across_entries, correlation_table, scatter, within_entry
    from .leaderboard import load_entries, model_label

    _, registry = _registry()
    entries = select_entries(load_entries(directory, registry), dataset_ref, tier)
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
        _console().print(correlation_table(data))
        click.echo(f"scatter plot written to {path}")


def _params(spec) -> str:
    from .cards import parameter_count
    from .errors import ModelLoadError

    try:
        return f"{parameter_count(spec) / 1e6:.2f}M"
    except ModelLoadError:
        return "?"


@cli.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_cmd(model, as_json):
    """Print a registered model's card: summary, paper, plugin, default arguments, parameter
    count, and per dataset its weights (file, sha256, present or missing, reproducing command)."""
    from .cards import format_card, model_card

    _, registry = _registry()
    card = model_card(registry.model(model))
    click.echo(json.dumps(card, indent=2) if as_json else format_card(card))


def main(argv=None):
    """Entry point: run the CLI, turning fmbench errors into one line and exit code 1."""
    try:
        cli.main(args=argv, prog_name="fmbench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except FmbenchError as exc:
        if STATE["debug"]:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
