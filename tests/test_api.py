"""The Python front door: fmbench.evaluate and its helpers, against the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import fmbench
from fmbench import Result

from .conftest import run_cli

SMALL = dict(n_images=2, image_size=64, corruptions=["noise", "sib"], attacks=["fgsm", "pgd"])
SMALL_CLI = ["--dataset", "nucleus", "--n-images", "2", "--image-size", "64", "--corruptions", "noise,sib",
             "--attacks", "fgsm,pgd", "--batch-size", "2", "--quiet"]


class NotebookNet(nn.Module):
    """A network defined in the test itself, as a notebook user would."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2, 3, padding=1))

    def forward(self, x):
        return self.net(x)


def _strip(doc):
    return {k: v for k, v in doc.items() if k not in ("run", "model")}


def test_evaluate_a_module_matches_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)  # the CLI seeds with the protocol seed (0) before building the model
    result = fmbench.evaluate(NotebookNet(), "nucleus", "quick", batch_size=2, **SMALL)
    assert isinstance(result, Result)
    assert list(tmp_path.iterdir()) == []  # without out=, nothing is written
    r = run_cli("eval", "--model", "tests.test_api:NotebookNet", *SMALL_CLI, "--out", str(tmp_path / "cli.json"),
                cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert r.returncode == 0, r.stderr
    cli = json.loads((tmp_path / "cli.json").read_text())
    assert result.summary == cli["summary"]
    assert result.per_image == cli["per_image"]
    assert _strip(result.document) == _strip(cli)
    assert result.model["parameters"] == cli["model"]["parameters"]


def test_result_round_trip_and_typed_access(tmp_path):
    torch.manual_seed(0)
    result = fmbench.evaluate(NotebookNet(), "nucleus", batch_size=2, out=tmp_path / "r.json", **SMALL)
    assert (tmp_path / "r.json").exists() and not (tmp_path / "r.json.partial.jsonl").exists()
    back = Result.load(tmp_path / "r.json")
    assert back.document == result.document and back["summary"] == result.summary
    assert back.condition("noise@2")["iou"] == result.per_image["iou"]["noise@2"][0] / 2 + \
        result.per_image["iou"]["noise@2"][1] / 2
    assert json.loads(result.to_json()) == result.document
    assert "_seconds" not in result.document and result.run["seconds"] > 0
    assert "NotebookNet" in repr(result) and "clean IoU" in repr(result)
    with pytest.raises(fmbench.ResultError, match="no condition 'noise@9'"):
        result.condition("noise@9")
    # the result is never replaced unasked; the library names the Python remedy
    with pytest.raises(fmbench.ResultError, match=r"r.json already exists; pass overwrite=True"):
        fmbench.evaluate(NotebookNet(), "nucleus", out=tmp_path / "r.json", **SMALL)


def test_library_errors_name_no_cli_flags_and_the_cli_adds_its_own(tmp_path):
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(fmbench.ResultError) as err:
        fmbench.evaluate(NotebookNet(), "nucleus", out=tmp_path / "r.json", **SMALL)
    assert "--" not in str(err.value)
    r = run_cli("eval", "--model", "unet-small", *SMALL_CLI, "--out", "r.json", cwd=str(tmp_path))
    assert r.returncode == 1 and "r.json already exists; pass --overwrite to replace it" in r.stderr
    with pytest.raises(fmbench.CheckpointError) as err:
        fmbench.load_model("unet-small", dataset="somewhere-else")
    assert "--" not in str(err.value) and "random_init=True" in str(err.value)


def test_front_door_helpers():
    p = fmbench.get_protocol("quick", n_images=3)
    assert p.n_images == 3 and p.variant and p.hash != fmbench.get_protocol("quick").hash
    with pytest.raises(fmbench.UnknownNameError, match="did you mean 'noise'"):
        fmbench.get_protocol("quick", corruptions=["nosie"])
    assert "pgd" in fmbench.list_plugins("attacks") and "nucleus" in fmbench.list_plugins("datasets")
    ds = fmbench.open_dataset("nucleus", "test", 64)
    assert len(ds) > 0 and ds[0].image.shape == (64, 64)
    loaded = fmbench.load_model("unet-small", dataset="nucleus")
    assert loaded.weights_sha256 and loaded.spec.name == "unet-small"
    conds = fmbench.plan(p, fmbench.api._registry()[1])
    assert [c.kind for c in conds][:1] == ["reference"] and all(hasattr(c, "apply") for c in conds)


def test_a_dataset_object_and_a_protocol_object():
    class Two:  # the nuclei the quick tier (v2) evaluates, given as an object
        name = "nucleus"
        ref = "nucleus@2"
        synthetic = True

        def __init__(self):
            self.ds = fmbench.open_dataset("nucleus@2", "test", 64)

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return self.ds[i]

    torch.manual_seed(0)
    by_object = fmbench.evaluate(NotebookNet(), Two(), fmbench.get_protocol("quick", **SMALL), batch_size=2)
    torch.manual_seed(0)
    by_name = fmbench.evaluate(NotebookNet(), "nucleus", "quick", batch_size=2, **SMALL)
    assert _strip(by_object.document) == _strip(by_name.document)


def test_the_docs_example_runs(tmp_path, monkeypatch):
    """docs/api.md's example, as written (it writes mynet.json in the working folder)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    result = Result.load(tmp_path / "mynet.json")
    assert result.model["ref"] == "__main__:MyNet" and result.dataset["n_images"] == 2
    assert result.condition("pgd@8/255")["n_images"] == 2


def test_progress_counts_model_work_and_a_log_gets_plain_lines(tmp_path, cli):
    """An attack chunk advances progress by its gradient steps, not by one chunk, so the ETA
    does not swing; with stderr not a terminal the CLI writes a plain line every 5 %."""
    seen = []
    fmbench.evaluate("unet-small", "nucleus", n_images=2, image_size=64, corruptions=["noise"], attacks=["pgd"],
                     batch_size=2, cache=False, progress=lambda d, t, label: seen.append((d, t, label)))
    steps = {label: d for d, _, label in seen}
    total = seen[-1][1]
    assert seen[-1][0] == total and seen[0][2] == "starting"
    # per image: reference and 5 noise levels 1 each; PGD-5 at 2/255 and 8/255: 2 + 3 x 5 each
    assert total == 2 * (1 + 5 + 2 * 17)
    assert steps["pgd ε=8/255"] - steps["pgd ε=2/255"] == 2 * 17
    r = cli("eval", "--model", "unet-small", "--dataset", "nucleus", "--n-images", "2", "--image-size", "64",
            "--corruptions", "noise", "--attacks", "pgd", "--no-cache", "--out", str(tmp_path / "r.json"))
    lines = [line for line in r.stderr.splitlines() if "% of the model work" in line]
    assert r.returncode == 0 and len(lines) >= 5 and "100 % of the model work (80/80" in lines[-1] and "ETA" in lines[-1]


def test_a_wrapped_module_is_named_by_the_model_it_wraps():
    import torch

    import fmbench

    from .test_attacks import _Thresh

    kw = dict(n_images=1, image_size=64, corruptions=["none"], attacks=["none"], cache=False)
    for wrapped in (torch.nn.DataParallel(_Thresh()), torch.compile(_Thresh(), backend="eager")):
        assert fmbench.evaluate(wrapped, "nucleus", **kw).document["model"]["ref"] == "tests.test_attacks:_Thresh"


def test_a_model_class_defined_in_a_notebook_evaluates(monkeypatch):
    """A notebook's (or stdin's) `__main__` has no file: its classes have no source to hash, so
    the run is simply not cached (it used to raise 'source code not available')."""
    import sys
    import types

    from torch import nn

    from fmbench.engine import source_sha256

    main = types.ModuleType("__main__")  # as in a Jupyter kernel: no __file__
    monkeypatch.setitem(sys.modules, "__main__", main)
    Net = type("Net", (nn.Module,), {"__module__": "__main__", "forward": lambda self, x: self.c(x)})

    def build():
        net = Net.__new__(Net)
        nn.Module.__init__(net)
        net.c = nn.Conv2d(1, 2, 3, padding=1)
        return net

    assert source_sha256(build()) is None
    result = fmbench.evaluate(build(), "nucleus", n_images=1, image_size=64, corruptions=["noise"], attacks=["none"])
    assert 0 <= result.summary["clean_iou"] <= 1


def test_odd_arguments_are_one_clear_error_each():
    """What a notebook user can pass by mistake: an fmbench error that says what is wrong, never a
    ZeroDivisionError or a 'no len()' from deep inside; one string of names is read as the CLI reads it."""
    kw = dict(n_images=1, image_size=64, attacks=["none"], corruptions=["none"], cache=False)
    for bad, message in (({"batch_size": 0}, "batch_size must be a whole number of at least 1, got 0"),
                         ({"batch_size": -2}, "at least 1"), ({"batch_size": 2.5}, "whole number"),
                         ({"device": 0}, "device must be"), ({"n_images": "1"}, "n_images must be a whole number"),
                         ({"n_images": 1.5}, "n_images must be a whole number"),
                         ({"attacks": [3]}, "attacks must be a list of names")):
        with pytest.raises(fmbench.FmbenchError, match=message):
            fmbench.evaluate("unet-small", "nucleus", **{**kw, **bad})
    for dataset in (None, 5, object()):
        with pytest.raises(fmbench.DataError, match="dataset must be a name"):
            fmbench.evaluate("unet-small", dataset, **kw)
    p = fmbench.get_protocol("quick", corruptions="noise, sib", attacks="fgsm")
    assert [c.name for c in p.corruptions] == ["noise", "sib"] and [a.name for a in p.attacks] == ["fgsm"]
