"""Every zoo model builds offline, follows the model contract and takes any input size."""

from __future__ import annotations

import pytest
import torch
from fmbench_plugins.zoo import ZOO

from fmbench.model import probe


@pytest.mark.parametrize("name", [z[0] for z in ZOO])
def test_zoo_model_builds_and_passes_probe(registry, name):
    spec = registry.model(name)
    assert spec.plugin == "fmbench_plugins.zoo" and spec.paper
    torch.manual_seed(0)
    model = spec.factory(**spec.defaults)
    assert probe(model, 64, torch.device("cpu")) == 1
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 1, 50, 70))
    assert out.shape == (1, 1, 50, 70)


def test_zoo_has_ten_distinct_architectures():
    assert len({z[0] for z in ZOO}) == 10


def _spec_with(weights, needs=True):
    from fmbench_plugins.unet import UNet

    from fmbench import ModelSpec

    return ModelSpec(name="cached-net", summary="test", factory=UNet, defaults={"width": 4, "depth": 2},
                     weights=weights, needs_weights=needs)


@pytest.fixture
def cached_net(registry, monkeypatch, tmp_path):
    """A registered model whose weights live in the user cache (FMBENCH_CACHE = tmp)."""
    from fmbench_plugins.unet import UNet

    from fmbench import Weights
    from fmbench.checkpoint import save_checkpoint
    from fmbench.files import sha256_file

    monkeypatch.setenv("FMBENCH_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(1)
    src = tmp_path / "made.pt"
    save_checkpoint(src, UNet(width=4, depth=2), {"model": "cached-net"})
    w = Weights(path="zoo/cached-net__nucleus.pt", sha256=sha256_file(src),
                command="fmbench train --model cached-net --dataset nucleus --seed 0", url=src.as_uri())
    return {"weights": w, "src": src, "cache": tmp_path / "cache" / "weights" / "zoo" / "cached-net__nucleus.pt"}


def test_cache_weights_missing_offline_say_how_to_make_them(cached_net, registry, pm, monkeypatch):
    import dataclasses

    from fmbench.errors import CheckpointError
    from fmbench.model import load_model

    w = dataclasses.replace(cached_net["weights"], url=None)
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": w}))
    with pytest.raises(CheckpointError) as err:
        load_model("cached-net", {}, registry, pm, dataset="nucleus")
    msg = str(err.value)
    assert f"missing at {cached_net['cache']}" in msg
    assert f"fmbench train --model cached-net --dataset nucleus --seed 0 --out {cached_net['cache']}" in msg
    with pytest.raises(CheckpointError, match=r"has no trained weights for dataset 'er' \(it has weights trained on: nucleus\)"):
        load_model("cached-net", {}, registry, pm, dataset="er")
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({}))
    with pytest.raises(CheckpointError, match=r"has no trained weights for dataset 'er' \(it has weights trained on: none\)"):
        load_model("cached-net", {}, registry, pm, dataset="er")
    assert load_model("cached-net", {}, registry, pm, dataset="er", random_init=True).checkpoint is None


def test_cache_weights_download_checked_by_sha256(cached_net, registry, pm, monkeypatch):
    import dataclasses

    from fmbench.errors import CheckpointError
    from fmbench.model import load_model

    w = cached_net["weights"]
    bad = dataclasses.replace(w, sha256="0" * 64)
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": bad}))
    with pytest.raises(CheckpointError, match="has sha256 .*expected 000000000000.*nothing was written"):
        load_model("cached-net", {}, registry, pm, dataset="nucleus")
    assert not cached_net["cache"].exists() and not list(cached_net["cache"].parent.glob(".*tmp"))
    gone = dataclasses.replace(w, url=(cached_net["src"].parent / "absent.pt").as_uri())
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": gone}))
    with pytest.raises(CheckpointError, match="could not be downloaded from .*reproduce them with: fmbench train"):
        load_model("cached-net", {}, registry, pm, dataset="nucleus")
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": w}))
    loaded = load_model("cached-net", {}, registry, pm, dataset="nucleus")
    assert cached_net["cache"].read_bytes() == cached_net["src"].read_bytes()
    assert loaded.checkpoint == str(cached_net["cache"]) and loaded.weights_sha256 == w.sha256


def test_zoo_models_need_weights_and_read_the_generated_table(registry):
    import json

    from fmbench_plugins.zoo import WEIGHTS_FILE, zoo_weights

    for name, *_ in ZOO:
        assert registry.model(name).needs_weights
    table = json.loads(WEIGHTS_FILE.read_text())["weights"] if WEIGHTS_FILE.exists() else {}
    got = zoo_weights()
    assert {m: set(d) for m, d in got.items()} == {m: set(d) for m, d in table.items()}
    for model, per_ds in got.items():
        for ds, w in per_ds.items():
            assert w.path == f"zoo/{model}__{ds}.pt" and w.package is None and len(w.state_sha256) == 64
            assert w.command.startswith(f"fmbench train --model {model} --dataset {ds} ") and "--out" not in w.command


def test_state_sha256_pins_the_tensors_not_the_file_bytes(cached_net, registry, pm, monkeypatch):
    """A re-made checkpoint (same tensors, other file bytes) is accepted; other tensors are not."""
    import dataclasses

    from fmbench_plugins.unet import UNet

    from fmbench.checkpoint import read_checkpoint, save_checkpoint, state_sha256
    from fmbench.errors import CheckpointError
    from fmbench.model import load_model

    state, _ = read_checkpoint(cached_net["src"])
    w = dataclasses.replace(cached_net["weights"], sha256="", state_sha256=state_sha256(state), url=None)
    monkeypatch.setattr(registry, "model", lambda name: _spec_with({"nucleus": w}))
    net = UNet(width=4, depth=2)
    net.load_state_dict(state)
    save_checkpoint(cached_net["cache"], net, {"model": "cached-net", "note": "re-made elsewhere"})
    assert cached_net["cache"].read_bytes() != cached_net["src"].read_bytes()
    assert load_model("cached-net", {}, registry, pm, dataset="nucleus").meta["note"] == "re-made elsewhere"
    torch.manual_seed(2)
    save_checkpoint(cached_net["cache"], UNet(width=4, depth=2), {"model": "cached-net"})
    with pytest.raises(CheckpointError, match=r"are not the registered ones: state sha256 .*remake them with: "
                                              r"fmbench train --model cached-net --dataset nucleus --seed 0 --out "):
        load_model("cached-net", {}, registry, pm, dataset="nucleus")
