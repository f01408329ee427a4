"""The ts:, smp:, timm: and mmseg: model adapters (plugins/adapters/, one module per scheme)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from fmbench.errors import ModelLoadError
from fmbench.model import build_model, load_model, probe

FAST = ["--dataset", "nucleus", "--n-images", "2", "--image-size", "64", "--corruptions", "none", "--quiet"]


def test_torchscript_model_evaluates_like_the_original(tmp_path, cli, registry, pm):
    # the shipped unet-small weights, so the IoU compared is a real one and not 0 == 0
    loaded = load_model("unet-small", {}, registry, pm, dataset="nucleus")
    # traced, not scripted: UNet's data-dependent padding does not script; at the evaluated
    # size (64, a multiple of 2**depth) the traced graph is the model's exact computation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(loaded.module, torch.rand(2, 1, 64, 64))
    traced.save(str(tmp_path / "unet.ts.pt"))
    ious = {}
    for name, ref in (("orig", "unet-small"), ("ts", f"ts:{tmp_path / 'unet.ts.pt'}")):
        r = cli("eval", "--model", ref, *FAST, "--attacks", "fgsm", "--out", str(tmp_path / f"{name}.json"),
                cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        res = json.loads((tmp_path / f"{name}.json").read_text())
        ious[name] = res["per_image"]["iou"]
    assert ious["ts"] == ious["orig"]
    assert set(ious["ts"]) >= {"reference"} and len(ious["ts"]) >= 2  # reference and fgsm conditions
    assert max(ious["ts"]["reference"]) > 0.3


def test_torchscript_bad_file(tmp_path, pm, registry):
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(ModelLoadError, match=r"junk.pt could not be loaded as TorchScript"):
        build_model(f"ts:{tmp_path / 'junk.pt'}", {}, registry, pm)
    with pytest.raises(ModelLoadError, match=r"TorchScript file .*missing.pt does not exist"):
        build_model(f"ts:{tmp_path / 'missing.pt'}", {}, registry, pm)


@pytest.mark.parametrize("ref,classes", [("smp:Unet/resnet18", 1), ("smp:FPN/mobilenet_v2", 3),
                                         ("timm:resnet18", 1), ("timm:convnext_atto", 2)])
def test_smp_and_timm_models_follow_the_contract(ref, classes, pm, registry):
    torch.manual_seed(0)
    module, spec = build_model(ref, {"classes": classes}, registry, pm)
    assert spec is None
    # 72 is not a multiple of 32: the adapters pad and crop
    assert probe(module, 72, torch.device("cpu")) == classes


@pytest.mark.parametrize("ref,message", [
    ("smp:Unett/resnet18", "error: unknown smp architecture 'Unett'; did you mean 'Unet'"),
    ("smp:Unet/resnet19", "error: unknown smp encoder 'resnet19'; did you mean 'resnet18'"),
    ("smp:Unet/tu-resnet19", "error: unknown timm model 'resnet19' in smp encoder 'tu-resnet19'; did you mean 'resnet18'"),
    ("smp:Unet", "error: model reference 'smp:Unet': expected smp:ARCH/ENCODER"),
    ("timm:resnet19", "error: unknown timm model 'resnet19' in 'timm:resnet19'; did you mean 'resnet18'"),
])
def test_bad_adapter_reference_gives_one_line(tmp_path, cli, ref, message):
    pytest.importorskip("segmentation_models_pytorch")
    r = cli("eval", "--model", ref, *FAST, "--attacks", "none", "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(message), lines[0]
    assert not (tmp_path / "r.json").exists()


def test_smp_unknown_architecture_lists_the_valid_ones(pm, registry):
    with pytest.raises(ModelLoadError) as err:
        build_model("smp:Unett/resnet18", {}, registry, pm)
    assert "known architectures: " in str(err.value) and "UnetPlusPlus" in str(err.value)


class _Scriptable(torch.nn.Module):
    """Zoo-like in miniature (conv, BatchNorm, pooling, upsampling, skip) and scriptable."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.mid = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.head = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        m = torch.nn.functional.interpolate(self.mid(torch.nn.functional.max_pool2d(e, 2)), size=e.shape[-2:])
        return self.head(torch.cat([e, m], 1))


def test_scripted_model_matches_the_original(tmp_path, pm, registry):
    torch.manual_seed(0)
    net = _Scriptable().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(net).save(str(tmp_path / "s.pt"))
    module, _ = build_model(f"ts:{tmp_path / 's.pt'}", {}, registry, pm)
    assert probe(module, 48, torch.device("cpu")) == 2
    x = torch.rand(2, 1, 48, 40)
    with torch.no_grad():
        assert torch.equal(module.eval()(x), net(x))
    with pytest.raises(ModelLoadError, match=r"ts: models take no model arguments \(got width\)"):
        build_model(f"ts:{tmp_path / 's.pt'}", {"width": 3}, registry, pm)


def test_mmseg_reference_without_mmseg_says_how_to_install(monkeypatch, pm, registry):
    monkeypatch.setitem(__import__("sys").modules, "mmseg", None)  # as if not installed
    with pytest.raises(ModelLoadError) as err:
        build_model("mmseg:configs/unet.py", {}, registry, pm)
    assert str(err.value).startswith("'mmseg:configs/unet.py' needs mmsegmentation, which is not installed: "
                                     "install the extra with `pip install 'fmbench[mmseg]'`")
