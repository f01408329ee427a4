"""The evaluation engine: determinism, resume, pass counts, metrics, normalisation, result files."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fmbench import evaluate
from fmbench.conditions import plan
from fmbench.data import normalize
from fmbench.errors import ResultError
from fmbench.metrics import (
    SegmentationMetrics,
    iou_dice,
    overlap_counts,
    predict,
    relative,
)
from fmbench.model import LoadedModel
from fmbench.runlog import partial_path

from .helpers import write_mymod

FAST = ["--dataset", "nucleus", "--n-images", "4", "--image-size", "64", "--batch-size", "2", "--quiet",
        "--corruptions", "noise,sib", "--attacks", "fgsm"]


class Thresh(nn.Module):
    """A deterministic tiny segmenter: a smoothed threshold (differentiable)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 9)
            self.conv.bias.fill_(-0.25)

    def forward(self, x):
        return 20 * self.conv(x)


def _run(registry, tmp_path, name, protocol, resume=False, stop_after=None):
    ds = registry.dataset("nucleus").factory(split="test", image_size=64)
    loaded = LoadedModel(module=Thresh(), ref="thresh", args={})
    calls = []

    def progress(done, total, label):
        if label == "starting":
            return
        calls.append(done)
        if stop_after is not None and len(calls) >= stop_after:
            raise KeyboardInterrupt

    # cache=False: these runs are meant to run (an identical earlier one would otherwise be reused)
    return evaluate(loaded, ds, protocol, device="cpu", batch_size=2, out=tmp_path / f"{name}.json", resume=resume,
                    progress=progress, cache=False)


def _strip(result):
    result = dict(result)
    result.pop("_seconds", None)
    result.pop("run", None)
    return result


def test_plan_orders_reference_corruptions_attacks(registry):
    p = registry.protocol("quick")
    conds = plan(p, registry)
    assert conds[0].id == "reference"
    kinds = [c.kind for c in conds]
    assert kinds == sorted(kinds, key=["reference", "corruption", "attack"].index)
    assert "noise@1" in [c.id for c in conds] and "fgsm@8/255" in [c.id for c in conds]


def test_resume_after_interrupt_gives_same_result(registry, tmp_path):
    protocol = registry.protocol("quick").customized(n_images=4, image_size=64, corruptions=["noise", "sib", "svb"],
                                                attacks=["fgsm", "pgd", "universal"])
    full = _run(registry, tmp_path, "full", protocol)
    with pytest.raises(KeyboardInterrupt):
        _run(registry, tmp_path, "cut", protocol, stop_after=7)
    log = tmp_path / "cut.json.partial.jsonl"
    n_lines = len(log.read_text().splitlines())
    assert n_lines == 1 + 7
    with open(log, "a") as f:  # a kill in the middle of writing a line
        f.write('{"batch": 1, "condition": "noi')
    resumed = _run(registry, tmp_path, "cut", protocol, resume=True)
    assert _strip(resumed) == _strip(full)
    assert resumed["conditions"][0]["n_images"] == 4


def test_resume_refuses_a_different_run(registry, tmp_path):
    protocol = registry.protocol("quick").customized(n_images=4, image_size=64, corruptions=["noise"], attacks=["fgsm"])
    with pytest.raises(KeyboardInterrupt):
        _run(registry, tmp_path, "cut", protocol, stop_after=2)
    other = protocol.customized(seed=5)
    with pytest.raises(ResultError, match="different settings .*protocol_hash"):
        _run(registry, tmp_path, "cut", other, resume=True)


def test_pass_counts_and_result_contents(registry, tmp_path):
    protocol = registry.protocol("quick").customized(n_images=4, image_size=64, corruptions=["noise"], attacks=["fgsm", "pgd"])
    res = _run(registry, tmp_path, "r", protocol)
    by_id = {c["id"]: c for c in res["conditions"]}
    assert by_id["reference"]["passes"] == {"forward_calls": 2, "forward_images": 4, "backward_calls": 0,
                                            "backward_images": 0}
    # FGSM: one forward+backward for the gradient, one forward to score
    assert by_id["fgsm@2/255"]["passes"] == {"forward_calls": 4, "forward_images": 8, "backward_calls": 2,
                                             "backward_images": 4}
    assert res["passes"]["forward_images"] == sum(c["passes"]["forward_images"] for c in res["conditions"])
    assert len(res["per_image"]["ids"]) == 4 and len(res["per_image"]["iou"]["noise@1"]) == 4
    assert res["protocol"]["hash"] == protocol.hash and res["protocol"]["id"].startswith("quick-v")
    ref = res["summary"]["clean_iou"]
    assert 0.3 < ref <= 1.0  # the threshold model does segment nuclei
    noise = [by_id[f"noise@{s}"]["iou"] for s in (5, 4, 3, 2, 1)]
    assert noise[-1] < noise[0]  # SNR 1 hurts more than SNR 5
    assert by_id["fgsm@8/255"]["iou"] < ref
    # the summary is the mean of the details
    fam = res["summary"]["families"]["noise"]
    assert fam["robustness"] == pytest.approx(sum(by_id[f"noise@{s}"]["robustness"] for s in (5, 4, 3, 2, 1)) / 5)


def test_same_seed_same_file_via_cli(tmp_path, cli):
    write_mymod(tmp_path)
    outs = []
    for name in ("a.json", "b.json"):
        r = cli("eval", "--model", "mymod:MyNet", *FAST, "--out", name, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        data = json.loads((tmp_path / name).read_text())
        assert set(data["run"]) >= {"command", "started", "seconds"}
        data.pop("run")
        outs.append(json.dumps(data, sort_keys=True))
    assert outs[0] == outs[1]
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--seed", "1", "--out", "c.json", cwd=tmp_path)
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["protocol"]["id"].endswith(",seed=1")
    assert c["per_image"]["iou"] != json.loads(outs[0])["per_image"]["iou"]


def test_cli_resume_and_overwrite_rules(tmp_path, cli, registry):
    write_mymod(tmp_path)
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--out", "r.json", cwd=tmp_path)
    assert r.returncode == 0
    before = (tmp_path / "r.json").read_text()
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--out", "r.json", cwd=tmp_path)  # the same run: reused
    assert r.returncode == 0 and "reused: an identical run finished" in r.stdout
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--batch-size", "4", "--out", "r.json", cwd=tmp_path)
    assert r.returncode == 1 and "r.json already exists; pass --overwrite" in r.stderr  # another run
    assert (tmp_path / "r.json").read_text() == before
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--out", "s.json", "--resume", cwd=tmp_path)
    assert r.returncode == 1 and "no unfinished run to resume" in r.stderr
    partial_path(tmp_path / "t.json").write_text('{"header": {}}\n')
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--out", "t.json", cwd=tmp_path)
    assert r.returncode == 1 and "an unfinished run exists" in r.stderr
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--out", "t.json", "--resume", cwd=tmp_path)
    assert r.returncode == 1 and "different settings" in r.stderr
    partial_path(tmp_path / "e.json").write_text("")  # an empty log is said to be one
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--out", "e.json", "--resume", cwd=tmp_path)
    assert r.returncode == 1 and "has no readable header (empty or damaged at its first line)" in r.stderr
    r = cli("eval", "--model", "mymod:MyNet", *FAST, "--out", "t.json", "--overwrite", "--json", cwd=tmp_path)
    assert r.returncode == 0
    printed = json.loads(r.stdout)
    assert printed == json.loads((tmp_path / "t.json").read_text())
    assert not partial_path(tmp_path / "t.json").exists()


@pytest.mark.parametrize("args,message", [
    (["--dataset", "nucleas"], "error: unknown dataset 'nucleas'; did you mean 'nucleus'?"),
    (["--dataset", "nucleus", "--corruptions", "blurr"], "error: unknown corruption 'blurr'"),
    (["--dataset", "nucleus", "--attacks", "fgsn"], "error: unknown attack 'fgsn'; did you mean 'fgsm'?"),
    (["--dataset", "nucleus", "--tier", "quik"], "error: unknown protocol 'quik'; did you mean 'quick'?"),
    (["--dataset", "nucleus", "--device", "cuda:7"] if not torch.cuda.is_available() else ["--dataset", "x"],
     "error: " if torch.cuda.is_available() else "error: device 'cuda:7' was asked for but no CUDA device"),
])
def test_unknown_names_give_one_line_and_no_file(tmp_path, cli, args, message):
    write_mymod(tmp_path)
    r = cli("eval", "--model", "mymod:MyNet", *args, "--out", "r.json", cwd=tmp_path)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith(message), r.stderr
    assert not (tmp_path / "r.json").exists()


def test_debug_shows_traceback(tmp_path, cli):
    r = cli("--debug", "eval", "--model", "nope", "--dataset", "nucleus", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "UnknownNameError" in r.stderr


def test_metrics_known_values():
    pred = torch.zeros(3, 4, 4, dtype=torch.bool)
    target = torch.zeros(3, 4, 4, dtype=torch.bool)
    pred[0, :2] = True
    target[0, 1:3] = True  # overlap 4 px, union 12
    target[1, 0, 0] = True  # prediction empty -> IoU 0
    # image 2: both empty -> IoU 1 by convention
    iou, dice = iou_dice(overlap_counts(pred, target))
    assert iou.tolist() == pytest.approx([4 / 12, 0.0, 1.0])
    assert dice.tolist() == pytest.approx([8 / 16, 0.0, 1.0])
    m = SegmentationMetrics()
    m.update(pred, target)
    out = m.compute()
    assert out["iou"] == pytest.approx((4 / 12 + 1) / 3) and out["iou_pooled"] == pytest.approx(4 / 13)
    ratios, mean = relative([0.5, 0.2, 0.3], [1.0, 0.0, 0.6])
    assert ratios == [0.5, None, 0.5] and mean == pytest.approx(0.5)
    assert predict(torch.tensor([[[[0.2]]], [[[-0.1]]]])).flatten().tolist() == [True, False]
    two = torch.tensor([[[[1.0]], [[2.0]]], [[[3.0]], [[-1.0]]]])
    assert predict(two).flatten().tolist() == [True, False]


def test_normalize_percentiles_and_range():
    y = torch.arange(1000, dtype=torch.float32).reshape(1, 1, 10, 100) * 3 + 7
    x = normalize(y)
    assert x.min() == 0 and x.max() == 1
    # the 1st percentile maps to 0 and the 99.8th to 1
    flat = x.flatten()
    assert (flat == 0).sum() == 11 and (flat == 1).sum() == 3
    assert normalize(torch.full((2, 1, 4, 4), 5.0)).abs().sum() == 0
