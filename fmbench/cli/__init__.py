"""The ``fmbench`` command line: parse options, call the library, print.

Library errors (:class:`fmbench.errors.FmbenchError`) become one line on stderr and exit code
1, with the remedies they name spelled as this CLI's options; ``--debug`` shows the traceback
instead.  Usage errors exit with 2.  The commands live in :mod:`.run` (eval, train),
:mod:`.look` (list, plugins, info, gallery, data) and :mod:`.board` (leaderboard, compare,
analyze).
"""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Any

import click

from .. import __version__

if TYPE_CHECKING:  # names for annotations only
    from rich.console import Console
    from rich.progress import Progress
from ..errors import FmbenchError

STATE = {"debug": False}

# the remedies library errors name (fmbench.errors.HINTS), in this CLI's words
CLI_HINTS = {
    "overwrite": "pass --overwrite to replace it",
    "resume": "pass --resume to continue it",
    "out": "or --out to choose another file",
    "random_init": "or pass --random-init to evaluate an untrained model",
    "checkpoint": "train weights with `fmbench train --model M --dataset D --out FILE` and pass --checkpoint FILE",
    "device": "use --device cpu or auto",
    "tier": "choose one with --tier",
    "trust": "pass --trust REF if you have read that code",
    "weights": "pass --weights NAME to evaluate the weights trained on one of those datasets",
    "traceback": "--debug shows where",
}


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # a pipe or a log file gets a table wide enough not to fold its rows
    return Console(stderr=stderr, width=None if stream.isatty() else 140)


def progress_bar(quiet: bool) -> Progress:
    """A rich progress bar with ETA on stderr (nothing when ``quiet``)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console(stderr=True), disable=quiet,
                    transient=False)


def registry() -> tuple[Any, Any]:
    from ..plugins import get_plugin_manager, get_registry

    pm = get_plugin_manager()
    return pm, get_registry(pm)


# what seeds and batch sizes can be: a seed is an unsigned 63-bit number (torch and numpy take it), and
# a batch size what a result file may record (the schema's maximum)
SEED = click.IntRange(min=0, max=2**63 - 1)
BATCH_SIZE = click.IntRange(min=1, max=4096)


def names(text: str | None) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def reproducing_command(drop_out: bool = False) -> str:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fmbench")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """fmbench: how robust is a segmentation network on fluorescence-microscopy images?

    Evaluate a model under the reference condition, controlled microscopy corruptions and
    adversarial attacks with `fmbench eval`; see what is registered with `fmbench list`.
    """
    STATE["debug"] = debug


from . import analyze, board, cached, campaign, look, report, run, zoo  # noqa: E402,F401  (the commands register on `cli`)


def _leave_process_group() -> None:
    """A distributed run (torchrun) leaves its process group cleanly."""
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning fmbench errors into one line and exit code 1."""
    try:
        try:
            cli.main(args=argv, prog_name="fmbench", standalone_mode=False)
        finally:
            _leave_process_group()
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
        import os

        # under torchrun every rank may fail: say which one
        where = f"rank {os.environ.get('RANK', '?')}: " if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else ""
        click.echo(f"error: {where}{exc.advice(CLI_HINTS)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
