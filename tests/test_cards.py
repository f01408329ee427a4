"""Model cards (`fmbench info`, the params column of `fmbench list models`) and the one-line
errors for bad weights: wrong architecture, sha256 mismatch, missing file."""

from __future__ import annotations

import json
from pathlib import Path

import fmbench_plugins
import pytest
import torch
from fmbench_plugins.unet import UNet

from fmbench import ModelSpec, Weights, hookimpl
from fmbench.cards import format_card, model_card, parameter_count
from fmbench.checkpoint import save_checkpoint
from fmbench.errors import CheckpointError
from fmbench.files import sha256_file
from fmbench.model import load_model
from fmbench.plugins import get_registry

SHIPPED = Path(fmbench_plugins.__file__).parent / "weights" / "unet-small_nucleus.pt"


def test_info_prints_the_card_of_a_model_with_weights(cli):
    r = cli("info", "unet-small")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("unet-small: compact U-Net")
    assert "paper:      Ronneberger et al., MICCAI 2015" in out
    assert "plugin:     fmbench_plugins.unet" in out
    assert "defaults:   width=16, depth=3" in out
    assert f"parameters: {sum(p.numel() for p in UNet(width=16, depth=3).parameters()):,}" in out
    assert "weights [nucleus]: present" in out
    assert f"sha256:  {sha256_file(SHIPPED)}" in out
    assert "command: fmbench train --model unet-small --dataset nucleus@2 --seed 0" in out


def test_info_json_and_unknown_model(cli):
    r = cli("info", "fpn-r18", "--json")
    assert r.returncode == 0, r.stderr
    card = json.loads(r.stdout)
    assert card["plugin"] == "fmbench_plugins.zoo" and card["paper"] == "Kirillov et al., CVPR 2019"
    assert card["parameters"] == 13_040_961
    # the weights plugins/zoo_weights.json registers, pinned by their tensors' sha256, in the cache
    from fmbench_plugins.zoo import zoo_weights

    assert [w["dataset"] for w in card["weights"]] == sorted(zoo_weights().get("fpn-r18", {}))
    for w in card["weights"]:
        assert w["path"].endswith(f"weights/zoo/fpn-r18__{w['dataset'].replace('/', '__')}.pt") and len(w["state_sha256"]) == 64
        assert w["status"] in ("present", "missing") and w["sha256"] is None
    bad = cli("info", "fpn-r1")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("error: unknown model 'fpn-r1'; did you mean 'fpn-r18'?")


def test_list_models_has_a_params_column(cli):
    r = cli("list", "models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["unet-small"]["params"] == "0.48M"
    assert rows["fpn-r18"]["params"] == "13.04M"
    assert all(row["params"] != "?" for row in rows.values())  # every model builds
    assert "nucleus" in rows["unet-small"]["weights"].split(", ")


def test_parameter_count_falls_back_to_cpu():
    def factory(width=3):
        torch.zeros(1).item()  # refuses to run on the meta device
        return torch.nn.Conv2d(1, width, 1)

    assert parameter_count(ModelSpec(name="x", summary="", factory=factory, defaults={"width": 5})) == 10


class BadWeights:
    """A plugin registering a tiny model whose weights are missing or hash wrongly."""

    def __init__(self, tmp: Path):
        self.tmp = tmp

    @hookimpl
    def fmbench_models(self):
        good = self.tmp / "tiny.pt"
        return [ModelSpec(name="tiny-test", summary="tiny", factory=UNet, defaults={"width": 2, "depth": 1},
                          weights={"nucleus": Weights(path=str(good), sha256="0" * 64, command="fmbench train X"),
                                   "er": Weights(path=str(self.tmp / "absent.pt"), sha256="1" * 64,
                                                 command="fmbench train --model tiny-test --dataset er")})]


@pytest.fixture
def bad_weights(tmp_path, register_plugin):
    save_checkpoint(tmp_path / "tiny.pt", UNet(width=2, depth=1), {})
    pm = register_plugin(BadWeights(tmp_path), name="test-bad-weights")
    return pm, get_registry(pm)


def test_sha256_mismatch_is_one_line(bad_weights, tmp_path):
    pm, registry = bad_weights
    with pytest.raises(CheckpointError) as err:
        load_model("tiny-test", {}, registry, pm, dataset="nucleus")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"weights {tmp_path / 'tiny.pt'} are not the registered ones: sha256 "
                          f"{sha256_file(tmp_path / 'tiny.pt')[:12]}..., expected 000000000000...; remake them with: ")


def test_missing_weights_say_how_to_reproduce(bad_weights, tmp_path):
    pm, registry = bad_weights
    with pytest.raises(CheckpointError) as err:
        load_model("tiny-test", {}, registry, pm, dataset="er")
    assert str(err.value) == (f"weights 'er' for 'tiny-test' are missing at {tmp_path / 'absent.pt'}; "
                              f"reproduce them with: fmbench train --model tiny-test --dataset er "
                              f"--out {tmp_path / 'absent.pt'} (it names no --tier: add the protocol version the "
                              "weights were made under, e.g. --tier quick-v1, or it trains under the default tier's "
                              "newest version) (or, holding the reference file, `fmbench zoo install FILE`)")
    # asked for by name, not by dataset: the message names them (it said "on None")
    with pytest.raises(CheckpointError) as err:
        load_model("tiny-test", {}, registry, pm, weights="er")
    assert str(err.value).startswith("weights 'er' for 'tiny-test' are missing at ")


def test_card_reports_missing_and_mismatched_weights(bad_weights):
    _, registry = bad_weights
    card = model_card(registry.model("tiny-test"))
    assert {w["dataset"]: w["status"] for w in card["weights"]} == {"er": "missing", "nucleus": "sha256 mismatch"}
    assert card["parameters"] == sum(p.numel() for p in UNet(width=2, depth=1).parameters())
    text = format_card(card)
    assert "weights [er]: missing" in text and "command: fmbench train --model tiny-test --dataset er" in text


def test_checkpoint_of_another_architecture_does_not_fit(tmp_path, cli):
    r = cli("eval", "--model", "fpn-r18", "--checkpoint", str(SHIPPED), "--dataset", "nucleus", "--n-images", "2",
            "--image-size", "64", "--corruptions", "none", "--attacks", "none", "--quiet",
            "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: checkpoint {SHIPPED} does not fit the model: ")
    assert "missing keys" in lines[0] and "unexpected keys" in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_list_datasets_names_versions_and_the_schemes_for_your_own_images(cli):
    r = cli("list", "datasets")
    assert r.returncode == 0 and "nucleus@2" in r.stdout
    out = " ".join(r.stdout.split())
    assert "folder:PATH" in out and "ermito:PATH" in out and "dsb2018:PATH" in out
    assert "file.py:Attr" in " ".join(cli("train", "--help").stdout.split())
