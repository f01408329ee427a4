"""The plugin system: hooks, registration, duplicates, typos, entry points."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from fmbench import (
    AttackEntry,
    AttackSpec,
    CorruptionSpec,
    ModelSpec,
    PluginError,
    Protocol,
    hookimpl,
    hookspecs,
)
from fmbench.plugins import get_registry

from .helpers import PLUGIN_CODE, make_dist

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("fmbench_")]


def test_every_hook_has_docstring_test_and_documentation():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    docs = (ROOT / "CONTRIBUTING.md").read_text()
    assert len(HOOKS) >= 7
    for name in HOOKS:
        assert getattr(hookspecs, name).__doc__, f"hook {name} has no docstring"
        assert f"def test_{name}" in tests, f"hook {name} has no test named test_{name}"
        assert name in docs, f"hook {name} is not documented in CONTRIBUTING.md"


class _Tiny(nn.Module):
    def __init__(self, width=2):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_fmbench_models(pm):
    class Plugin:
        @hookimpl
        def fmbench_models(self):
            return [ModelSpec(name="tiny", summary="tiny", factory=_Tiny)]

    pm.register(Plugin(), name="tiny-plugin")
    reg = get_registry(pm)
    assert reg.models["tiny"].plugin == "tiny-plugin"
    assert reg.models["unet-small"].plugin == "fmbench_plugins.unet"


def test_fmbench_datasets(registry):
    spec = registry.dataset("nucleus")
    assert spec.plugin == "fmbench_plugins.synth_nucleus"
    ds = spec.factory(split="test", image_size=64)
    sample = ds[0]
    assert sample.image.shape == (64, 64) and sample.mask.dtype == bool and sample.mask.any()


def test_fmbench_corruptions(registry):
    spec = registry.corruption("noise")
    assert isinstance(spec, CorruptionSpec) and 8.0 in spec.levels and spec.label(2.0) == "SNR 2"


def test_fmbench_attacks(registry):
    spec = registry.attack("fgsm")
    assert isinstance(spec, AttackSpec) and "linf" in spec.norms


def test_fmbench_protocols(pm):
    custom = Protocol(name="tiny", version=3, description="test", n_images=2, image_size=64, reference_snr=8.0,
                      corruptions=(), attacks=(AttackEntry("fgsm", (1 / 255,)),))

    class Plugin:
        @hookimpl
        def fmbench_protocols(self):
            return [custom]

    pm.register(Plugin(), name="proto-plugin")
    reg = get_registry(pm)
    assert reg.protocol("tiny").id == "tiny-v3"
    assert reg.protocol("tiny-v3").plugin == "proto-plugin"
    assert reg.protocol("quick").name == "quick"


def test_fmbench_resolve_model(pm):
    from fmbench.model import build_model

    class Plugin:
        @hookimpl
        def fmbench_resolve_model(self, ref, args):
            if ref.startswith("toy:"):
                return _Tiny(**args)
            return None

    pm.register(Plugin(), name="toy-resolver")
    module, spec = build_model("toy:anything", {"width": 3}, get_registry(pm), pm)
    assert isinstance(module, _Tiny) and spec is None


def test_fmbench_resolve_dataset(pm):
    from fmbench.datasets import open_dataset

    nucleus = get_registry(pm).dataset("nucleus")

    class Plugin:
        @hookimpl
        def fmbench_resolve_dataset(self, ref, split, image_size):
            if ref.startswith("toyds:"):
                return nucleus.factory(split=split, image_size=image_size)
            return None

    pm.register(Plugin(), name="toyds")
    ds = open_dataset("toyds:x", "val", 48, registry=get_registry(pm), pm=pm)
    assert ds[0].image.shape == (48, 48)


def test_duplicate_name_names_both_plugins(pm):
    class Plugin:
        @hookimpl
        def fmbench_models(self):
            return [ModelSpec(name="unet-small", summary="impostor", factory=_Tiny)]

    pm.register(Plugin(), name="impostor")
    with pytest.raises(PluginError, match=r"'unet-small' is registered twice: by plugin 'fmbench_plugins.unet' and by plugin 'impostor'"):
        get_registry(pm)


def test_misspelled_hook_fails_loudly(pm):
    from fmbench.plugins import check

    class Plugin:
        @hookimpl
        def fmbench_modles(self):
            return []

    pm.register(Plugin(), name="typo")
    with pytest.raises(PluginError, match="typo.*fmbench_modles"):
        check(pm)


def test_wrong_spec_type_is_refused(pm):
    class Plugin:
        @hookimpl
        def fmbench_datasets(self):
            return [ModelSpec(name="x", summary="x", factory=_Tiny)]

    pm.register(Plugin(), name="confused")
    with pytest.raises(PluginError, match="confused.*returned a ModelSpec, expected DatasetSpec"):
        get_registry(pm)


def _cli(args, site, allow, cwd):
    env = dict(os.environ, PYTHONPATH=str(site), FMBENCH_LOAD_PLUGINS=allow, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "fmbench", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_entry_point_plugin_is_listed_and_evaluated_by_name(tmp_path):
    site = make_dist(tmp_path / "site", "fmbench-tinynet", "fmbench_tinynet", PLUGIN_CODE.replace("{name}", "tinynet"))
    r = _cli(["list", "models"], site, "fmbench_tinynet", tmp_path)
    assert r.returncode == 0, r.stderr
    line = next(line for line in r.stdout.splitlines() if "tinynet" in line)
    assert "fmbench_tinynet" in line
    r = _cli(["plugins"], site, "fmbench_tinynet", tmp_path)
    assert "fmbench-tinynet 0.1" in r.stdout
    out = tmp_path / "r.json"
    r = _cli(["eval", "--model", "tinynet", "--dataset", "nucleus", "--n-images", "2", "--image-size", "64",
              "--attacks", "none", "--out", str(out), "--quiet"], site, "fmbench_tinynet", tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.exists()


def test_installed_plugins_are_ignored_unless_allowed(tmp_path):
    site = make_dist(tmp_path / "site", "fmbench-tinynet", "fmbench_tinynet", PLUGIN_CODE.replace("{name}", "tinynet"))
    r = _cli(["list", "models"], site, "", tmp_path)
    assert r.returncode == 0 and "tinynet" not in r.stdout


def test_plugin_that_fails_to_import_names_its_distribution(tmp_path):
    site = make_dist(tmp_path / "site", "fmbench-broken", "fmbench_broken", "import not_a_real_module_xyz\n")
    r = _cli(["list", "models"], site, "fmbench_broken", tmp_path)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1
    assert "plugin 'fmbench_broken'" in err[0] and "fmbench-broken 0.1" in err[0]
    assert "No module named 'not_a_real_module_xyz'" in err[0]


def test_duplicate_plugin_name_from_entry_point_is_one_line_error(tmp_path):
    site = make_dist(tmp_path / "site", "fmbench-dup", "fmbench_dup", PLUGIN_CODE.replace("{name}", "unet-small"))
    out = tmp_path / "r.json"
    r = _cli(["eval", "--model", "unet-small", "--dataset", "nucleus", "--out", str(out)], site, "fmbench_dup", tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: model 'unet-small' is registered twice: by plugin 'fmbench_plugins.unet' and by plugin 'fmbench_dup'"]
    assert not out.exists()


def test_worked_example_package_installs_trains_and_evaluates(tmp_path):
    """CONTRIBUTING.md's worked example, examples/fmbench-mynet: pip-install it (to a target
    dir), find its model by name, train it and write a leaderboard entry for it."""
    target = tmp_path / "target"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(ROOT / "examples" / "fmbench-mynet")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"pip could not build the package here: {r.stderr[-300:]}")
    r = _cli(["list", "models"], target, "mynet", tmp_path)
    assert r.returncode == 0, r.stderr
    assert any("mynet" in line and "two-level encoder-decoder" in line for line in r.stdout.splitlines())
    r = _cli(["plugins"], target, "mynet", tmp_path)
    assert "fmbench-mynet 0.1.0" in r.stdout
    r = _cli(["train", "--model", "mynet", "--dataset", "nucleus", "--steps", "2", "--out", "w.pt", "--quiet"],
             target, "mynet", tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli(["eval", "--model", "mynet", "--checkpoint", "w.pt", "--dataset", "nucleus", "--n-images", "2",
              "--image-size", "64", "--corruptions", "noise", "--attacks", "fgsm", "--quiet", "--out", "r.json",
              "--leaderboard-entry", "e.json"], target, "mynet", tmp_path)
    assert r.returncode == 0, r.stderr
    entry = json.loads((tmp_path / "e.json").read_text())
    assert entry["model"]["ref"] == "mynet" and entry["model"]["plugin"] == "mynet"
    assert entry["model"]["training"]["command"] == "fmbench train --model mynet --dataset nucleus --steps 2 --tier quick-v2"
    assert entry["provenance"]["command"].startswith("fmbench eval --model mynet --checkpoint w.pt")
