"""Commands that show what is registered and what the data look like: ``list``, ``plugins``,
``info``, ``corruptions gallery``, ``data export`` and ``data preview``."""

from __future__ import annotations

import json

import click

from ..protocol import DEFAULT_TIER
from ..specs import ModelSpec
from . import SEED, cli, console, registry


def _params(spec: ModelSpec) -> str:
    from ..cards import parameter_count
    from ..errors import ModelLoadError

    try:
        return f"{parameter_count(spec) / 1e6:.2f}M"
    except ModelLoadError:
        return "?"


@cli.command("list")
@click.argument("kind", type=click.Choice(["models", "datasets", "corruptions", "attacks", "protocols", "label-noise"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(kind, as_json):
    """List registered models, datasets, corruptions, attacks, protocols or label-noise models,
    with the plugin that registered each."""
    from rich.table import Table

    from ..api import list_plugins
    from ..weights import weights_path

    rows = []
    kind = "label_noises" if kind == "label-noise" else kind
    for name, spec in list_plugins(kind).items():
        row = {"name": name, "summary": getattr(spec, "summary", getattr(spec, "description", "")), "plugin": spec.plugin}
        if kind == "corruptions":
            row["levels"] = ", ".join(spec.label(lv) for lv in spec.levels)
        elif kind == "attacks":
            row["norms"] = ", ".join(spec.norms)
        elif kind == "models":
            row["weights"] = ", ".join(ds if weights_path(w).is_file() else f"{ds} (missing)"
                                       for ds, w in sorted(spec.weights.items())) or "—"
            row["params"] = _params(spec)
        elif kind == "protocols":
            row["hash"] = spec.hash
            row["status"] = "draft (run by id)" if spec.draft else "released"
        elif kind == "label_noises":
            row["severities"] = ", ".join(f"{v:g}" for v in spec.severities) + f" — {spec.unit}" + \
                (", whole numbers" if spec.whole_severity else "")
            row["default"] = f"{spec.default_severity:g}"
        elif kind == "datasets":
            row["versions"] = ", ".join(name if v == spec.versions[0] else f"{name}@{v}" for v in spec.versions)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"registered {kind.replace('_', ' ')}", title_justify="left")
    for col in rows[0] if rows else ["name"]:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    console().print(table)
    if kind == "datasets":  # your own images need no registration: say how to name them
        console().print("your own images: folder:PATH (images/ + masks/, or NAME.tif beside NAME_mask.tif), "
                        "ermito:PATH (the ER/Mito release's layout), dsb2018:PATH (DSB 2018 stage1_train); "
                        "see docs/datasets.md")


@cli.command("plugins")
def plugins_cmd():
    """Show loaded plugins, their distributions and the hooks each implements."""
    from rich.table import Table

    from ..plugins import distribution_of

    pm, _ = registry()
    table = Table(title="fmbench plugins", title_justify="left")
    for col in ("plugin", "distribution", "hooks"):
        table.add_column(col)
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda x: x[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        table.add_row(name, distribution_of(name), ", ".join(hooks))
    console().print(table)


@cli.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_cmd(model, as_json):
    """Print a registered model's card: summary, paper, plugin, default arguments, parameter
    count, and per dataset its weights (file, sha256, present or missing, reproducing command)."""
    from ..cards import format_card, model_card

    _, reg = registry()
    card = model_card(reg.model(model))
    click.echo(json.dumps(card, indent=2) if as_json else format_card(card))


@cli.group("corruptions")
def corruptions_group():
    """Look at the registered corruptions (`fmbench list corruptions` lists them)."""


@corruptions_group.command("gallery")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Image of the test split.")
@click.option("--tier", default=DEFAULT_TIER, show_default=True, help="Protocol whose camera, seed and normalisation are used.")
@click.option("--image-size", type=click.IntRange(min=32), help="Image size (default: the protocol's).")
@click.option("--corruption", "names", multiple=True, help="Only these corruptions (repeatable).")
@click.option("--outline", is_flag=True, help="Draw the (possibly resampled) mask outline in green.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def gallery_cmd(dataset_ref, out, index, tier, image_size, names, outline, overwrite=False):
    """Write a montage of every corruption x severity on one image (rows: corruptions,
    columns: severities), exactly as the engine feeds them to a model."""
    from ..datasets import open_dataset
    from ..files import refuse_existing
    from ..gallery import write_gallery

    refuse_existing(out, overwrite)
    pm, reg = registry()
    protocol = reg.protocol(tier)
    for name in names:
        reg.corruption(name)
    dataset = open_dataset(dataset_ref, protocol.split, image_size or protocol.image_size, registry=reg, pm=pm)
    path = write_gallery(out, dataset, dataset_ref, protocol, reg, index=index, names=names, outline=outline)
    click.echo(f"gallery written to {path}")


@cli.group("data")
def data_group():
    """Export a dataset to TIFF files or preview it as a montage."""


def _data_open(dataset_ref, split, image_size, seed):
    from ..datasets import open_dataset

    pm, reg = registry()
    return open_dataset(dataset_ref, split, image_size, seed=seed, registry=reg, pm=pm)


@data_group.command("export")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to create.")
@click.option("--n", "n", type=click.IntRange(min=1), help="Export the first N images (default: the whole split).")
@click.option("--format", "fmt", default="float32", show_default=True, type=click.Choice(["float32", "uint16"]))
@click.option("--seed", type=SEED, help="Generator seed of a synthetic dataset (default: its own, 0).")
@click.option("--image-size", type=click.IntRange(min=32), default=256, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def data_export_cmd(dataset_ref, split, out, n, fmt, seed, image_size, overwrite):
    """Write images (TIFF), masks (uint8 TIFF) and manifest.json with sha256 per file."""
    from ..export import export

    dataset = _data_open(dataset_ref, split, image_size, seed)
    manifest = export(dataset, out, n=n, fmt=fmt, overwrite=overwrite)
    click.echo(f"{manifest['n']} images written to {out}"
               + (f" (the {split} split has {manifest['n']}, not {n})" if n and n > manifest["n"] else ""))


@data_group.command("preview")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--n", "n", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--seed", type=SEED, help="Generator seed of a synthetic dataset (default: its own, 0).")
@click.option("--image-size", type=click.IntRange(min=32), default=256, show_default=True)
@click.option("--tier", default=DEFAULT_TIER, show_default=True, help="Protocol whose reference condition is shown.")
@click.option("--reference-snr", type=click.FloatRange(min=0, min_open=True),
              help="Show your own images at this SNR, as `eval --reference-snr` scores them.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def data_preview_cmd(dataset_ref, out, n, split, seed, image_size, tier, overwrite=False, reference_snr=None):
    """Montage PNG: each image at the reference condition above its noise-free (synthetic) or
    recorded (your own images) version with the mask outline; an image the evaluation leaves out
    (own SNR below the reference) is framed in red."""
    from ..export import preview
    from ..files import refuse_existing

    refuse_existing(out, overwrite)
    from ..api import get_protocol

    protocol = get_protocol(tier, reference_snr=reference_snr)
    dataset = _data_open(dataset_ref, split, image_size, seed)
    preview(dataset, out, n=n, protocol=protocol)
    click.echo(f"preview written to {out}" + ("" if dataset.synthetic else
               f" (top: each image brought to the reference SNR {protocol.reference_snr:g} as the evaluation scores it; "
               f"framed in red: left out, its own SNR below it or undefined)"))


@data_group.command("compare")
@click.argument("reference", metavar="DATASET_A")
@click.option("--dataset", "dataset_ref", required=True, metavar="DATASET_B",
              help="The dataset to set beside it (a registered name such as nucleus, or folder:PATH).")
@click.option("--n", "n", type=click.IntRange(min=1), default=16, show_default=True, help="Images of each.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--tier", default=DEFAULT_TIER, show_default=True, help="Protocol whose reference condition is used.")
@click.option("--out", default="realism.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG with one histogram per statistic.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def data_compare_cmd(reference, dataset_ref, n, split, tier, out, as_json, overwrite=False):
    """How far apart two datasets are (real images beside a synthetic dataset, say): intensity,
    noise and SNR, boundary sharpness, spectrum, object sizes and shapes, each side by side with
    a distance (Wasserstein over pooled spread: 0 the same, 1 a typical spread apart)."""
    from pathlib import Path

    from rich.table import Table

    from ..datasets import open_dataset
    from ..files import refuse_existing
    from ..realism import compare, dataset_statistics, figure, observed

    refuse_existing(out, overwrite)
    pm, reg = registry()
    protocol = reg.protocol(tier)
    stats = []
    for ref in (reference, dataset_ref):
        ds = open_dataset(ref, split, protocol.image_size, registry=reg, pm=pm)
        stats.append(dataset_statistics(observed(ds, ref, protocol, n)))
    rows = compare(stats[0], stats[1])
    if Path(out).parent and not Path(out).parent.exists():
        raise click.BadParameter(f"the folder {Path(out).parent} does not exist", param_hint="--out")
    figure(rows, stats[0], stats[1], (reference, dataset_ref), out)
    if as_json:
        click.echo(json.dumps({"a": reference, "b": dataset_ref, "rows": rows, "png": out}, indent=2))
        return

    def cell(s):
        return "—" if s["median"] is None else f"{s['median']:.3g} [{s['q25']:.3g}, {s['q75']:.3g}]"

    table = Table(title=f"{reference} (A) beside {dataset_ref} (B): median \\[interquartile range]; distance: "
                        f"Wasserstein over the pooled within-dataset spread", title_justify="left")
    for col in ("statistic", "A", "B", "distance"):
        table.add_column(col, justify="left" if col == "statistic" else "right")
    for r in rows:
        d = r["distance"]
        table.add_row(r["statistic"], cell(r["a"]), cell(r["b"]), "—" if d != d else f"{d:.2f}")
    console().print(table)
    click.echo(f"figure written to {out}")


def _train_split(dataset_ref, tier, reg):
    """The training split a protocol trains on: a bare name pinned to its version (nucleus -> nucleus@2)."""
    protocol = reg.protocol(tier)
    dataset_ref = protocol.dataset_ref(dataset_ref)
    return dataset_ref, _data_open(dataset_ref, "train", protocol.image_size, None)


@cli.group("label-noise")
def label_noise_group():
    """Label-noise models: rough annotations for training (docs/label-noise.md)."""


@label_noise_group.command("gallery")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Image of the training split.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="The training seed the noise is drawn with.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--tier", default=DEFAULT_TIER, show_default=True,
              help="Protocol whose dataset version a bare name means (nucleus -> nucleus@2 under v2).")
def label_noise_gallery(dataset_ref, out, index, seed, tier, overwrite=False):
    """Every label noise at each severity on one training image: exact and noisy outlines."""
    import numpy as np

    from ..errors import DataError
    from ..files import atomic_write, refuse_existing
    from ..label_noise import gallery

    refuse_existing(out, overwrite)
    _, reg = registry()
    dataset_ref, ds = _train_split(dataset_ref, tier, reg)
    if index >= len(ds):
        raise DataError(f"dataset {dataset_ref!r}: image index {index} is out of range (it has {len(ds)} images)")
    s = ds[index]
    img = gallery(np.asarray(s.image, float), np.asarray(s.mask, bool), f"{dataset_ref}/train/{index}", reg, seed)
    atomic_write(out, lambda f: img.save(f, format="PNG"))
    click.echo(f"label-noise gallery written to {out}")


@label_noise_group.command("roughness")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--images", type=click.IntRange(min=1), default=48, show_default=True,
              help="The first N training images, every one made noisy.")
@click.option("--setting", "settings", multiple=True, metavar="KIND[:SEVERITY]",
              help="A kind at a severity (repeatable; default: every kind at each gallery severity).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="The training seed the noise is drawn with.")
@click.option("--tier", default=DEFAULT_TIER, show_default=True,
              help="Protocol whose dataset version a bare name means (nucleus -> nucleus@2 under v2).")
def label_noise_roughness(dataset_ref, images, settings, seed, tier):
    """How rough each label noise is on a dataset: mask IoU of noisy against exact masks."""
    import numpy as np
    from rich.table import Table

    from ..errors import ProtocolError
    from ..label_noise import parse_setting, roughness

    _, reg = registry()
    dataset_ref, ds = _train_split(dataset_ref, tier, reg)
    n = min(images, len(ds))
    masks = np.stack([np.asarray(ds[i].mask, bool) for i in range(n)])
    chosen: list[tuple[str, float]] = []
    for text in settings or [f"{k}:{s:g}" for k, spec in reg.label_noises.items() for s in spec.severities]:
        parts = text.split(":")
        if len(parts) > 2 or not parts[0] or (len(parts) == 2 and not parts[1]):
            raise ProtocolError(f"--setting {text!r}: expected KIND[:SEVERITY] (e.g. boundary:2)")
        try:  # the severity checked as --label-noise checks it
            setting = parse_setting(f"{parts[0]}:1" + (f":{parts[1]}" if len(parts) == 2 else ""), reg)
        except ProtocolError as e:
            why = str(e).split(": ", 1)[-1].replace("RATE and SEVERITY must be numbers", "SEVERITY must be a number")
            raise ProtocolError(f"--setting {text!r}: {why}") from None
        if (setting.kind, setting.severity) not in chosen:
            chosen.append((setting.kind, setting.severity))
    rows = roughness(masks, [f"{dataset_ref}/train/{i}" for i in range(n)], reg, chosen, seed)
    table = Table(title=f"label noise on {dataset_ref}: {n} training images, each made noisy (seed {seed})",
                  title_justify="left")
    for col in ("kind", "severity", "mask IoU median", "p10", "lost", "added"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for r in rows:
        table.add_row(r["kind"], f"{r['severity']:g}", f"{r['mask_iou_median']:.3f}", f"{r['mask_iou_p10']:.3f}",
                      f"{r['lost']:.3f}", f"{r['added']:.3f}")
    console().print(table)
