"""``fmbench eval`` and ``fmbench train``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.markup import escape

from ..errors import ResultError
from ..protocol import DEFAULT_TIER
from . import BATCH_SIZE, SEED, cli, console, names, progress_bar, registry, reproducing_command


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
@click.option("--weights", "weights_name", metavar="NAME",
              help="A registered model's weights trained on dataset NAME (for your own images: folder:...).")
@click.option("--dataset", "dataset_ref", required=True, help="Registered dataset name or scheme:... reference.")
@click.option("--tier", "--protocol", "tier", default=DEFAULT_TIER, show_default=True,
              help="Protocol tier (quick, full) or exact id (quick-v1).")
@click.option("--n-images", type=click.IntRange(min=1), help="Evaluate fewer/more images (makes a protocol variant).")
@click.option("--seed", type=SEED, help="Override the protocol seed (makes a protocol variant).")
@click.option("--image-size", type=click.IntRange(min=32), help="Synthetic image size (makes a protocol variant).")
@click.option("--reference-snr", type=click.FloatRange(min=0, min_open=True),
              help="Score at this SNR instead of the protocol's (8) -- for your own images recorded dimmer; "
                   "noise levels at or above it are dropped (a protocol variant, never ranked).")
@click.option("--corruptions", "only_corruptions", metavar="A,B", help="Only these of the protocol's corruptions ('none' for none).")
@click.option("--attacks", "only_attacks", metavar="A,B", help="Only these of the protocol's attack families ('none' for none).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["bf16"]),
              help="Run the model in bfloat16 mixed precision (a protocol variant: never ranked with float32 "
                   "results; measured tolerance in docs/scale.md).")
@click.option("--batch-size", type=BATCH_SIZE, default=8, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Result JSON (default: fmbench-results/...).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its partial log.")
@click.option("--overwrite", is_flag=True, help="Replace an existing result or partial run.")
@click.option("--recompute", is_flag=True, help="Run even when an identical finished run's result exists.")
@click.option("--no-cache", is_flag=True, help="Neither reuse nor store results in the user cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON on stdout instead of a table.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--leaderboard-entry", "entry_out", type=click.Path(dir_okay=False),
              help="Also write a leaderboard entry (leaderboard/*.json format) built from the result.")
@click.option("--leaderboard", "leaderboard_dir", type=click.Path(file_okay=False),
              help="Entries to rank the result among, in the last line (default: ./leaderboard, else the "
                   "reference entries installed with fmbench).")
def eval_cmd(model_ref, model_args, checkpoint, random_init, weights_name, dataset_ref, tier, n_images, seed, image_size,
             only_corruptions, only_attacks, device, batch_size, out, resume, overwrite, as_json, quiet,
             entry_out=None, leaderboard_dir=None, recompute=False, no_cache=False, amp=None, reference_snr=None):
    """Evaluate a model on a dataset under a protocol and write a result JSON."""
    from ..api import evaluate, get_protocol
    from ..model import parse_model_args

    args = parse_model_args(model_args)
    overrides = dict(n_images=n_images, seed=seed, image_size=image_size,
                     corruptions=names(only_corruptions) if only_corruptions else None,
                     attacks=names(only_attacks) if only_attacks else None, precision=amp, reference_snr=reference_snr)
    protocol = get_protocol(tier, **{k: v for k, v in overrides.items() if v is not None})
    out_path = Path(out) if out else _default_out(model_ref, dataset_ref, protocol.id)
    if entry_out and Path(entry_out).exists() and not overwrite:
        raise ResultError(f"{entry_out} already exists", hints=("overwrite",))
    if entry_out and Path(entry_out).resolve() == out_path.resolve():
        raise ResultError(f"the result and the leaderboard entry would both be written to {out_path}")
    from ..files import check_writable

    for target in (out_path, *([entry_out] if entry_out else [])):  # before the run, not after it
        check_writable(target)
    from ..distributed import shard

    part = shard()  # under torchrun: only rank 0 shows progress and prints the result
    silent = quiet or part.rank != 0
    interactive = console(stderr=True).is_terminal
    bar = progress_bar(silent or not interactive)
    task = None
    log_line = PlainProgress(f"{model_ref} · {dataset_ref} · {protocol.id}") if not (silent or interactive) else None

    def on_progress(done, total, label):
        nonlocal task
        if log_line is not None:  # not a terminal (a log file, CI): a plain line every 5 %
            log_line(done, total, label)
            return
        if task is None:  # shown from the run's start, so a refused model or file prints only its error
            bar.start()
            task = bar.add_task(f"{model_ref} · {dataset_ref} · {protocol.id}", total=total)
        bar.update(task, completed=done, total=total, description=f"{model_ref} · {label}")

    try:
        result = evaluate(model_ref, dataset_ref, protocol, model_args=args, checkpoint=checkpoint,
                          random_init=random_init, weights=weights_name, device=device, batch_size=batch_size, out=out_path,
                          resume=resume, overwrite=overwrite, progress=on_progress, command=reproducing_command(),
                          cache=not no_cache, recompute=recompute, unique_out=out is None)
    finally:
        if task is not None:
            bar.stop()
    if part.rank != 0:
        return
    if entry_out:
        from ..leaderboard import build_entry, write_entry

        write_entry(entry_out, build_entry(result.document), overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(result.document, indent=2))
        return
    from ..show import flag_lines, standing

    out_console = console()
    out_console.print(result.table())
    for w in result.warnings:
        out_console.print(f"[yellow]warning:[/yellow] {escape(w)}")
    for line in flag_lines(result):
        out_console.print(line)
    out_path = result.path or out_path
    if result.reused is not None:
        when = (result.document.get("run") or {}).get("finished", "?")
        where = "" if result.reused == out_path else f" (found in the cache, {result.reused}; copied to {out_path})"
        out_console.print(f"reused: an identical run finished {when}; result {out_path}{where}; --recompute runs it again")
    else:
        out_console.print(f"result written to {out_path}")
    if result.displaced is not None:
        kept, why = result.displaced
        what = "a result without an identity (an older fmbench)" if why == ["identity"] else (
            f"a different run ({', '.join(why)} differ)")
        out_console.print(f"{kept} holds {what} and is kept; this run's result is {out_path}")
    if entry_out:
        out_console.print(f"leaderboard entry written to {entry_out}")
    if leaderboard_dir is None:
        from ..leaderboard.store import default_dir

        leaderboard_dir = str(default_dir())
    out_console.print(escape(standing(result, _entries(leaderboard_dir), str(out_path), leaderboard_dir)))


class PlainProgress:
    """Progress for a log file: one line at the start and every ``step`` of the work (the
    engine counts forward-pass equivalents, so attack-heavy stretches do not skew the ETA)."""

    def __init__(self, what: str, step: float = 0.05):
        self.what, self.step = what, step
        self.next = 0.0
        self.t0: float | None = None
        self.done0 = 0.0

    def __call__(self, done: float, total: float, label: str) -> None:
        now = time.perf_counter()
        if label == "starting" or self.t0 is None:
            self.t0, self.done0 = now, done
        frac = done / total if total else 1.0
        if frac < self.next and done < total:
            return
        self.next = (int(frac / self.step) + 1) * self.step
        elapsed = now - self.t0
        rate = (done - self.done0) / elapsed if elapsed > 0 and done > self.done0 else 0.0
        eta = f"ETA {_clock((total - done) / rate)}" if rate > 0 else "ETA —"
        click.echo(f"{self.what}: {100 * frac:.0f} % of the model work ({done:.0f}/{total:.0f} image forward-pass "
                   f"equivalents), {_clock(elapsed)} elapsed, {eta} · {label}", err=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _entries(directory: str) -> list | str | None:
    """The leaderboard's validated entries for the standing line, ``None`` without a folder, or
    why the folder cannot rank anything (an entry does not validate)."""
    from ..errors import ResultError
    from ..leaderboard import load_entries
    from ..plugins import get_registry

    if not Path(directory).is_dir():
        return None
    try:
        return load_entries(directory, get_registry())
    except ResultError as exc:
        return f"the leaderboard folder {directory}/ does not validate: {exc.message}"


@cli.command("train")
@click.option("--model", "model_ref", required=True, help="Registered model name, module:Attr or file.py:Attr.")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE")
@click.option("--dataset", "dataset_ref", required=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), help="Override the recipe's number of steps.")
@click.option("--tier", default=DEFAULT_TIER, show_default=True, help="Protocol whose reference condition and image size are used.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Checkpoint to write.")
@click.option("--half", is_flag=True, help="Store weights as float16 (smaller file).")
@click.option("--defense", default="none", show_default=True, type=click.Choice(["none", "noise-aug", "pgd-at"]),
              help="noise-aug: an SNR drawn per image from the protocol's noise levels; pgd-at: half of each "
                   "batch replaced by L-inf PGD examples (3 steps, eps 4/255). Recorded in the checkpoint.")
@click.option("--label-noise", "label_noise", metavar="KIND:RATE[:SEVERITY]",
              help="Rough annotations on RATE of the training masks (`fmbench list label-noise`; e.g. boundary:0.2:2). "
                   "Validation and test masks stay exact; recorded in the checkpoint.")
@click.option("--resume", is_flag=True, help="Continue from the periodic training state.")
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", is_flag=True)
def train_cmd(model_ref, model_args, dataset_ref, seed, steps, tier, out, half, defense, resume, overwrite, quiet,
              label_noise=None):
    """Train a model with the fixed, seeded recipe and write a checkpoint with metadata."""
    import torch

    from ..datasets import open_dataset
    from ..files import check_writable, write_json
    from ..model import build_model, parse_model_args
    from ..seeding import derive_seed
    from ..train import recipe_for, train
    from ..weights import pinned_tier

    pm, reg = registry()
    args = parse_model_args(model_args)
    protocol = reg.protocol(tier)
    out_path = Path(out)
    record, state = Path(f"{out_path}.json"), Path(f"{out_path}.state.pt")  # written beside it
    for made in (out_path, record):
        if made.exists() and not overwrite:
            raise ResultError(f"{made} already exists", hints=("overwrite",))
    if state.exists() and not (resume or overwrite):
        raise ResultError(f"{state} holds an interrupted training's state: --resume continues it, --overwrite "
                          f"starts again")
    check_writable(out_path)  # before the training, not after it
    torch.manual_seed(derive_seed("init", seed))  # the initial weights are drawn now, not in train()
    module, spec = build_model(model_ref, args, reg, pm)
    # version 1's fixed recipe, or version 2's with the architecture's recorded changes
    noise = None
    if label_noise is not None:  # (an empty setting is refused, not read as none)
        from ..label_noise import parse_setting

        noise = parse_setting(label_noise, reg).text  # canonical: boundary:0.2 and boundary:0.2:2 are one recipe
    recipe = recipe_for(protocol, dict(spec.recipe) if spec else None, steps=steps, defense=defense, label_noise=noise)
    dataset_ref = protocol.dataset_ref(dataset_ref)  # a bare name: the version the protocol pins
    ds_train = open_dataset(dataset_ref, "train", protocol.image_size, registry=reg, pm=pm)
    ds_val = open_dataset(dataset_ref, "val", protocol.image_size, registry=reg, pm=pm)
    t0 = time.perf_counter()
    with progress_bar(quiet) as bar:
        task = bar.add_task(f"train {model_ref} on {dataset_ref}", total=recipe.steps)

        def on_progress(done, total, info):
            desc = f"train {model_ref} · loss {info['loss']:.3f}"
            if "val_iou" in info:
                bar.console.print(f"step {done}: val IoU {info['val_iou']:.4f}")
            bar.update(task, completed=done, description=desc)

        meta = train(module, ds_train, ds_val, model_name=model_ref, model_args={**(spec.defaults if spec else {}), **args},
                     dataset_ref=dataset_ref, protocol=protocol, registry=reg, recipe=recipe, seed=seed, out=out_path,
                     resume=resume, overwrite=overwrite, half=half, on_progress=on_progress,
                     command=_canonical_noise(pinned_tier(reproducing_command(drop_out=True), protocol.id), noise))
    # the training record: the checkpoint's metadata plus what may differ between identical
    # runs (wall time), kept beside the checkpoint so the checkpoint itself stays reproducible
    write_json(record, meta)
    used = meta.get("images_used") or {}
    if used and (used["train"] < recipe.n_train or used["val"] < recipe.n_val):
        click.echo(f"note: trained on {used['train']} and validated on {used['val']} images (the recipe's "
                   f"{recipe.n_train} and {recipe.n_val}: the dataset has no more); its validation IoU is measured "
                   f"on {used['val']} image{'s' if used['val'] != 1 else ''}", err=True)
    click.echo(f"checkpoint written to {out_path} (val IoU {meta['val_iou']:.4f}, "
               f"{time.perf_counter() - t0:.0f} s" + (f" this run, {meta['train_seconds']:.0f} s of training in all" if resume
                                                       else "") + f", state sha256 {meta['state_sha256'][:12]})")


def _canonical_noise(command: str, noise: str | None) -> str:
    """The recorded training command with its ``--label-noise`` written as the recipe writes it
    (``boundary:0.2`` -> ``boundary:0.2:2``): the command and the setting are compared as text."""
    import re
    import shlex

    if not noise:
        return command
    return re.sub(r"(^|\s)--label-noise(?:=|\s+)\S+", lambda m: f"{m.group(1)}--label-noise {shlex.quote(noise)}", command)
