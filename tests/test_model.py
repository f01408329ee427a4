"""Model references, checkpoints and the model contract, through the real CLI."""

from __future__ import annotations

import re

import pytest
import torch

from fmbench.checkpoint import read_checkpoint
from fmbench.errors import CheckpointError, ModelContractError, ModelLoadError
from fmbench.model import parse_model_args, probe

from .helpers import write_mymod

FAST = ["--dataset", "nucleus", "--n-images", "2", "--image-size", "64", "--attacks", "none", "--quiet"]


def test_parse_model_args_types_values():
    args = parse_model_args(["width=8", "rate=0.5", "name=resnet18", "flag=false", "none=null", "shape=(1, 2)",
                             "quoted='a=b'"])
    assert args == {"width": 8, "rate": 0.5, "name": "resnet18", "flag": False, "none": None, "shape": (1, 2),
                    "quoted": "a=b"}
    with pytest.raises(ModelLoadError, match="expected KEY=VALUE"):
        parse_model_args(["novalue"])


def test_eval_class_from_module_outside_repository(tmp_path, cli):
    work = tmp_path / "elsewhere"
    write_mymod(work)
    r = cli("eval", "--model", "mymod:MyNet", "--model-arg", "width=6", *FAST, "--out", "res.json", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "clean IoU" in r.stdout
    import json

    res = json.loads((work / "res.json").read_text())
    assert res["model"]["ref"] == "mymod:MyNet" and res["model"]["args"] == {"width": 6}
    assert res["model"]["parameters"] == 6 * 9 + 6 + 2 * 6 * 9 + 2


def test_eval_file_path_reference(tmp_path, cli):
    path = write_mymod(tmp_path / "m")
    r = cli("eval", "--model", f"{path}:MyNet", *FAST, "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("model,args,message", [
    ("unet-smal", [], "error: unknown model 'unet-smal'; did you mean 'unet-small'?"),
    ("nomod_xyz:Net", [], "error: model reference 'nomod_xyz:Net': no module named 'nomod_xyz'"),
    ("mymod:Missing", [], "error: model reference 'mymod:Missing': 'mymod' has no attribute 'Missing'"),
    ("mymod:Broken", [], "error: could not construct mymod:Broken(): RuntimeError: weights server unreachable"),
    ("mymod:MyNet", ["--model-arg", "depth=3"], "error: could not construct mymod:MyNet(depth=3): TypeError"),
    ("mymod:not_a_module", [], "error: mymod:not_a_module returned a int, expected a torch.nn.Module"),
    ("mymod:WrongShape", [], "error: model breaks the fmbench contract: output has shape (2, 2, 32, 32) for input "
                             "(2, 1, 64, 64), expected (2, C, 64, 64)"),
    ("mymod:NaNNet", [], "error: model breaks the fmbench contract: output has 16384 NaN or infinite values"),
])
def test_bad_model_gives_one_line_and_no_file(tmp_path, cli, model, args, message):
    write_mymod(tmp_path)
    out = tmp_path / "r.json"
    r = cli("eval", "--model", model, *args, *FAST, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(message), lines[0]
    assert not out.exists() and not list(tmp_path.glob("*.partial.jsonl"))


def test_checkpoint_loading_and_errors(tmp_path, cli):
    import importlib.util
    import sys

    path = write_mymod(tmp_path)
    spec = importlib.util.spec_from_file_location("mymod_ckpt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.save(mod.MyNet(width=4).state_dict(), tmp_path / "good.pt")
    torch.save(mod.MyNet(width=8).state_dict(), tmp_path / "wide.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")

    ok = cli("eval", "--model", "mymod:MyNet", "--checkpoint", "good.pt", *FAST, "--out", "ok.json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    import hashlib
    import json

    res = json.loads((tmp_path / "ok.json").read_text())
    assert res["model"]["checkpoint_sha256"] == hashlib.sha256((tmp_path / "good.pt").read_bytes()).hexdigest()

    for ckpt, message in [
        ("missing.pt", "error: checkpoint missing.pt does not exist"),
        ("wide.pt", "error: checkpoint wide.pt does not fit the model: 3 shape mismatches (e.g. net.0.weight: "
                    "checkpoint (8, 1, 3, 3) vs model (4, 1, 3, 3))"),
        ("junk.pt", "error: checkpoint junk.pt could not be read as a weights-only torch file"),
    ]:
        r = cli("eval", "--model", "mymod:MyNet", "--checkpoint", ckpt, *FAST, "--out", "bad.json", cwd=tmp_path)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines()[0].startswith(message), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad.json").exists()
    sys.modules.pop("mymod_ckpt", None)


def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {"x": Evil()}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"could not be read as a weights-only torch file: it pickles "
                                              r"builtins.print, which fmbench does not unpickle; save just"):
        read_checkpoint(tmp_path / "evil.pt")


@pytest.mark.parametrize("content, message", [
    ({"state_dict": {"w": torch.zeros(1)}, "meta": "rm -rf ~"}, "its metadata is a str, not a mapping"),
    ({"state_dict": {"w": torch.zeros(1)}, "meta": {"val_iou": float("nan")}}, "its metadata is not plain JSON"),
    ({"state_dict": {"w": torch.zeros(1)}, "meta": {"t": torch.zeros(1)}}, "its metadata is not plain JSON"),
    ({"state_dict": {3: torch.zeros(1)}}, "state dict key 3 is not a string"),
    ({"state_dict": {"w": torch.zeros(2, 2).to_sparse()}}, "tensor 'w' is a torch.sparse_coo"),
    ({"state_dict": {"w": torch.zeros(2, dtype=torch.complex64)}}, "tensor 'w' is a torch.strided torch.complex64"),
])
def test_checkpoint_contents_are_checked_in_one_line(tmp_path, content, message):
    """What a checkpoint holds reaches results and entries, and its tensors are hashed: anything
    but string-keyed dense tensors and plain-JSON metadata is refused when read, saying what."""
    torch.save(content, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=re.escape(message)) as info:
        read_checkpoint(tmp_path / "odd.pt")
    assert str(tmp_path / "odd.pt") in str(info.value) and "\n" not in str(info.value)


def test_a_foreign_pickle_gets_fmbench_advice_not_torchs(tmp_path):
    import pickle

    (tmp_path / "old.pt").write_bytes(pickle.dumps({"w": [1, 2]}))
    with pytest.raises(CheckpointError, match="not a weights-only torch file") as info:
        read_checkpoint(tmp_path / "old.pt")
    assert "weights_only set to False" not in str(info.value) and "weights_only=False" not in str(info.value)
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(CheckpointError, match="is not a regular file"):
        read_checkpoint(tmp_path / "dir.pt")


def test_probe_reports_every_violation_in_plain_words():
    class Random(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 1)

        def forward(self, x):
            return self.conv(x) + torch.rand_like(x)

    with pytest.raises(ModelContractError, match="two forward passes of the same input in eval mode differ"):
        probe(Random(), 32, torch.device("cpu"))

    class NoGrad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 1)

        def forward(self, x):
            return self.conv(torch.round(x * 4) / 4)

    with pytest.raises(ModelContractError, match="gradient of the loss with respect to the input is zero"):
        probe(NoGrad(), 32, torch.device("cpu"))

    class IntOut(torch.nn.Module):
        def forward(self, x):
            return (x > 0.5).long()

    with pytest.raises(ModelContractError, match="output dtype is torch.int64"):
        probe(IntOut(), 32, torch.device("cpu"))

    class Fine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    assert probe(Fine(), 32, torch.device("cpu")) == 3


def test_registered_model_without_weights_is_refused(cli, tmp_path):
    r = cli("eval", "--model", "unet-small", "--dataset", "nucleus", "--model-arg", "width=4", "--n-images", "1",
            "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert r.returncode == 1
    assert "has no trained weights for dataset 'nucleus'" in r.stderr or "does not fit the model" in r.stderr


def test_a_training_scripts_checkpoint_layouts_load_or_say_what_to_do(tmp_path):
    """The state dict beside an optimiser's ({"model_state_dict": ...}) loads; keys a wrapper
    prefixed ("module." from DataParallel) or a dict with no state dict say what to do."""
    from fmbench.checkpoint import load_state

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1))
    sd = net.state_dict()
    for key in ("model_state_dict", "model"):
        torch.save({key: sd, "optimizer": {"lr": 0.1}, "epoch": 3}, tmp_path / "c.pt")
        state, _ = read_checkpoint(tmp_path / "c.pt")
        assert state.keys() == sd.keys()
    torch.save({"optimizer": {"lr": 0.1}, "epoch": 3}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match=r"holds no state dict .*its top-level keys: 'optimizer', 'epoch'"):
        read_checkpoint(tmp_path / "none.pt")
    prefixed = {f"module.{k}": v for k, v in sd.items()}
    with pytest.raises(CheckpointError, match=r"every key of the checkpoint starts with 'module.' \(saved from a "
                                              r"wrapped model\)"):
        load_state(net, prefixed, "checkpoint c.pt")
    # integer or bool tensors where the model has float parameters would be cast without a word
    for dtype in (torch.int8, torch.bool):
        with pytest.raises(CheckpointError, match=rf"2 floating-point parameters stored as non-float tensors "
                                                  rf"\(e.g. 0.weight: {dtype}\)"):
            load_state(net, {k: (v * 100).to(dtype) for k, v in sd.items()}, "checkpoint c.pt")
    load_state(net, {k: v.half() for k, v in sd.items()}, "checkpoint c.pt")  # float16 (train --half): fine


def test_an_output_that_cannot_be_written_is_refused_before_the_run(tmp_path, monkeypatch):
    import os

    from fmbench import files
    from fmbench.errors import ResultError

    files.check_writable(tmp_path / "new" / "deeper" / "r.json")  # folders that will be made: fine
    real = os.access
    monkeypatch.setattr(files.os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    with pytest.raises(ResultError, match=rf"cannot write .*r.json: {tmp_path} is not a writable folder"):
        files.check_writable(tmp_path / "new" / "r.json")


def test_an_output_folder_is_checked_as_itself(tmp_path):
    from fmbench import files
    from fmbench.errors import ResultError

    files.check_writable(tmp_path / "runs", folder_itself=True)  # to be made inside a writable one
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ResultError, match=r"cannot write .*taken: .*taken is not a writable folder"):
        files.check_writable(tmp_path / "taken", folder_itself=True)
