"""Re-running is free: a finished run's result is reused by an identical run, and never by a
run that differs in anything it measures (fmbench.cache)."""

from __future__ import annotations

import json

import pytest
import torch

import fmbench
from fmbench import cache
from fmbench.errors import ResultError

from .helpers import write_mymod

TINY = dict(n_images=1, image_size=64, corruptions=["noise"], attacks=["none"])


def test_an_identical_run_is_reused_from_its_output_file_and_from_the_cache(tmp_path):
    first = fmbench.evaluate("unet-small", "nucleus", out=tmp_path / "r.json", **TINY)
    assert first.reused is None and first.path == tmp_path / "r.json"
    assert first["identity"]["key"] == cache.key(first["identity"]) and first["identity"]["dataset_sha256"]
    again = fmbench.evaluate("unet-small", "nucleus", out=tmp_path / "r.json", **TINY)
    assert again.reused == tmp_path / "r.json" and again.document == first.document
    # no output file: the user cache has it
    notebook = fmbench.evaluate("unet-small", "nucleus", **TINY)
    assert notebook.reused == cache.results_dir() / f"{first['identity']['key']}.json"
    assert notebook.document == first.document
    # a new output file gets a copy of the cached result
    copy = fmbench.evaluate("unet-small", "nucleus", out=tmp_path / "copy.json", **TINY)
    assert copy.reused is not None and json.loads((tmp_path / "copy.json").read_text()) == first.document
    # recompute runs again (the same numbers), cache=False neither reads nor writes
    assert fmbench.evaluate("unet-small", "nucleus", recompute=True, **TINY).reused is None
    assert fmbench.evaluate("unet-small", "nucleus", cache=False, **TINY).reused is None


def test_cache_false_stores_nothing():
    fmbench.evaluate("unet-small", "nucleus", cache=False, **TINY)
    assert cache.listing() == []


@pytest.mark.parametrize("change", ["protocol", "dataset version", "weights", "batch size"])
def test_a_run_that_differs_in_what_it_measures_is_never_reused(change, tmp_path):
    fmbench.evaluate("unet-small", "nucleus", **TINY)
    kwargs: dict = dict(TINY)
    dataset = "nucleus"
    if change == "protocol":
        kwargs["n_images"] = 2
    elif change == "dataset version":
        dataset = "nucleus@1"  # the default tier (quick-v2) reads a bare "nucleus" as nucleus@2
    elif change == "weights":
        kwargs["weights"] = "mito"  # another registered weights file of the same model
    else:
        kwargs["batch_size"] = 4
    assert fmbench.evaluate("unet-small", dataset, **kwargs).reused is None


def test_a_changed_dataset_file_is_never_reused(tmp_path):
    from fmbench.export import export

    export(fmbench.open_dataset("nucleus", "test", 64), tmp_path / "d", n=1)
    (tmp_path / "d" / "manifest.json").unlink()
    ref = f"folder:{tmp_path / 'd'}"
    fmbench.evaluate("unet-small", ref, weights="nucleus", **TINY)
    import tifffile

    image = next((tmp_path / "d" / "images").iterdir())
    tifffile.imwrite(image, tifffile.imread(image) * 1.5)
    assert fmbench.evaluate("unet-small", ref, weights="nucleus", **TINY).reused is None


def test_a_different_run_never_replaces_a_result_and_is_an_error_at_an_explicit_path(tmp_path):
    fmbench.evaluate("unet-small", "nucleus", out=tmp_path / "r.json", **TINY)
    before = (tmp_path / "r.json").read_bytes()
    with pytest.raises(ResultError, match="already exists"):
        fmbench.evaluate("unet-small", "nucleus", out=tmp_path / "r.json", batch_size=4, **TINY)
    r = fmbench.evaluate("unet-small", "nucleus", out=tmp_path / "r.json", batch_size=4, unique_out=True, **TINY)
    assert r.path == tmp_path / "r-2.json" and r.displaced == (tmp_path / "r.json", ["batch_size"])
    assert (tmp_path / "r.json").read_bytes() == before


def test_the_readme_command_twice_and_a_model_before_and_after_training(tmp_path, cli):
    """The issue's two cases, through the CLI and its default output names."""
    write_mymod(tmp_path)
    args = ("eval", "--model", "mymod:MyNet", "--dataset", "nucleus", "--n-images", "1", "--image-size", "64",
            "--corruptions", "noise", "--attacks", "none", "--quiet")
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (default,) = (tmp_path / "fmbench-results").glob("*.json")
    assert "result written to" in first.stdout
    second = cli(*args, cwd=tmp_path)
    assert second.returncode == 0 and "reused: an identical run finished" in second.stdout, second.stderr
    table = first.stdout.split("result written to")[0]
    assert table in second.stdout  # the same table, printed at once
    # the same model after training: a new checkpoint, a second file, the first one kept
    import importlib.util

    torch.manual_seed(1)
    spec = importlib.util.spec_from_file_location("mymod", tmp_path / "mymod.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.save(mod.MyNet().state_dict(), tmp_path / "trained.pt")
    third = cli(*args, "--checkpoint", "trained.pt", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    second_file = default.with_name(default.stem + "-2.json")
    assert second_file.exists() and json.loads(default.read_text())["identity"] != json.loads(
        second_file.read_text())["identity"]
    out = " ".join(third.stdout.split())
    assert f"{default.relative_to(tmp_path)} holds a different run" in out and "weights_sha256" in out
    assert f"this run's result is {second_file.relative_to(tmp_path)}" in out


def test_a_changed_model_source_is_never_reused(tmp_path, cli):
    write_mymod(tmp_path)
    args = ("eval", "--model", "mymod:MyNet", "--dataset", "nucleus", "--n-images", "1", "--image-size", "64",
            "--corruptions", "noise", "--attacks", "none", "--quiet", "--out", "r.json")
    assert cli(*args, cwd=tmp_path).returncode == 0
    (tmp_path / "mymod.py").write_text((tmp_path / "mymod.py").read_text() + "\n# edited\n")
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 1 and "r.json already exists" in r.stderr  # not reused, not replaced


def test_cache_ls_and_clear(cli):
    fmbench.evaluate("unet-small", "nucleus", **TINY)
    (row,) = cache.listing()
    assert row["model"] == "unet-small" and row["dataset"] == "nucleus@2" and 0 <= row["clean_iou"] <= 1
    r = cli("cache", "ls", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["key"] == row["key"]
    r = cli("cache", "clear", row["key"][:8])
    assert r.returncode == 0 and "removed 1 cached result" in r.stdout and cache.listing() == []


class Thresh(torch.nn.Module):
    """A fixed threshold whose setting is a plain attribute, not a tensor."""

    def __init__(self, t: float = 0.5):
        super().__init__()
        self.t = t
        self.scale = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        return self.scale * (x - self.t)


def test_a_model_that_differs_only_in_settings_or_in_a_submodules_code_is_never_reused(tmp_path, cli):
    """The cache's identity covers every submodule's class file and non-tensor settings: the same
    class with another threshold, a factory's Sequential around an edited class, and a class
    without a source file (a notebook's) are never taken for an earlier run."""
    a = fmbench.evaluate(Thresh(0.5), "nucleus", **TINY)
    b = fmbench.evaluate(Thresh(0.3), "nucleus", **TINY)
    assert b.reused is None and b.per_image["iou"] != a.per_image["iou"]
    assert fmbench.evaluate(Thresh(0.3), "nucleus", **TINY).reused is not None  # the same one is

    code = "import torch\nclass A(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n" \
           "        self.s = torch.nn.Parameter(torch.tensor(20.0))\n    def forward(self, x):\n" \
           "        return self.s * (x - {t})\ndef make():\n    return torch.nn.Sequential(A())\n"
    (tmp_path / "seqmod.py").write_text(code.format(t=0.5))
    args = ("eval", "--model", "seqmod:make", "--dataset", "nucleus", "--n-images", "1", "--image-size", "64",
            "--corruptions", "noise", "--attacks", "none", "--quiet", "--random-init")
    assert cli(*args, cwd=tmp_path).returncode == 0
    (tmp_path / "seqmod.py").write_text(code.format(t=0.3))
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 0 and "reused" not in r.stdout + r.stderr, r.stdout + r.stderr

    namespace: dict = {}
    exec(code.format(t=0.5), namespace)  # a class with no source file, as in a notebook
    first = fmbench.evaluate(namespace["make"](), "nucleus", **TINY)
    assert first["identity"]["model_source_sha256"] is None
    assert fmbench.evaluate(namespace["make"](), "nucleus", **TINY).reused is None
