"""bioimage.io packages: a zoo model exported as one validates with bioimage.io's own library and
evaluates through `bioimageio:` as the registered model does; what fmbench cannot honour is
refused with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fmbench

pytest.importorskip("bioimageio.spec")

ROOT = Path(__file__).resolve().parents[1]
SMALL = fmbench.get_protocol("quick-v1", n_images=2, corruptions=["noise"], attacks=["fgsm"])


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from fmbench.bioimageio import export_package

    out = tmp_path_factory.mktemp("pkg") / "unet-small-er"
    export_package("unet-small", "er", out, tier="quick-v1")
    return out


def test_exported_package_validates_and_carries_scores(tmp_path, cli):
    from bioimageio.spec import load_description

    r = cli("zoo", "export", "unet-small", "--dataset", "er", "--tier", "quick-v1", "--out", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr
    assert "format: valid-format" in r.stdout and "scores: from quick-v1 entry" in r.stdout
    descr = load_description(str(tmp_path / "p" / "rdf.yaml"))
    assert descr.validation_summary.status == "valid-format"
    fm = json.loads((tmp_path / "p" / "rdf.yaml").read_text())["config"]["fmbench"]
    entry = json.loads((ROOT / "leaderboard" / "unet-small__er__quick-v1.json").read_text())
    assert fm["scores"]["robust_iou"] == entry["scores"]["robust_iou"] and fm["protocol_hash"] == entry["protocol"]["hash"]
    r = cli("zoo", "export", "unet-small", "--dataset", "er", "--tier", "quick-v1", "--out", str(tmp_path / "p"))
    assert r.returncode == 1 and "exists and is not empty" in r.stderr  # nothing overwritten


def test_a_package_evaluates_as_the_registered_model_does(package):
    a = fmbench.evaluate("unet-small", "er", SMALL, batch_size=2, cache=False)
    b = fmbench.evaluate(f"bioimageio:{package}", "er", SMALL, batch_size=2, cache=False)
    src = b["model"]["source"]
    assert src["kind"] == "bioimageio" and src["output"] == "logits" and len(src["rdf_sha256"]) == 64
    assert "scale_range" in src["preprocessing"]
    for c in a.conditions:  # the package's own percentile scaling sits on fmbench's: within 0.005
        d = np.abs(np.asarray(a.per_image["iou"][c["id"]]) - np.asarray(b.per_image["iou"][c["id"]]))
        assert d.max() < 0.005, c["id"]
    # the package's description is part of the run: another description is another run
    assert b["identity"]["model_source"]["rdf_sha256"] == src["rdf_sha256"]


def edited(package, tmp_path, change):
    import shutil

    out = tmp_path / "edited"
    shutil.copytree(package, out)
    rdf = json.loads((out / "rdf.yaml").read_text())
    change(rdf)
    (out / "rdf.yaml").write_text(json.dumps(rdf))
    return out


@pytest.mark.parametrize("change,message", [
    (lambda r: r["inputs"][0]["preprocessing"].insert(0, {"id": "scale_linear", "kwargs": {"gain": 0.0039, "offset": 0.0}}),
     "preprocessing 'scale_linear' on raw intensities cannot be honoured"),
    (lambda r: r["inputs"][0]["preprocessing"].insert(0, {"id": "scale_mean_variance",
                                                          "kwargs": {"reference_tensor": "raw"}}),
     "not a valid bioimage.io model description|preprocessing 'scale_mean_variance' is not supported"),
    (lambda r: r["outputs"][0].update(postprocessing=[]),
     "cannot tell logits from probabilities"),
])
def test_what_cannot_be_honoured_is_refused_with_its_reason(package, tmp_path, change, message):
    with pytest.raises(fmbench.ModelLoadError, match=message):
        fmbench.load_model(f"bioimageio:{edited(package, tmp_path, change)}")


def test_a_missing_package_is_one_clear_line(tmp_path, cli):
    r = cli("eval", "--model", f"bioimageio:{tmp_path / 'nothing'}", "--dataset", "er", "--n-images", "1")
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_a_zipped_package_runs_its_own_weights_not_a_file_beside_it(package, tmp_path):
    """A `.zip` is read from inside: a `weights.pt` that happens to lie beside it is not the model."""
    import shutil
    import zipfile

    from fmbench.bioimageio import export_package

    folder = tmp_path / "zipped"
    folder.mkdir()
    with zipfile.ZipFile(folder / "pkg.zip", "w") as z:
        for f in package.iterdir():
            z.write(f, f.name)
    export_package("unet-small", "mito", tmp_path / "other", tier="quick-v1")
    shutil.copy(tmp_path / "other" / "weights.pt", folder / "weights.pt")  # another model's weights, beside it
    zipped = fmbench.load_model(f"bioimageio:{folder / 'pkg.zip'}").module.fmbench_source
    direct = fmbench.load_model(f"bioimageio:{package}").module.fmbench_source
    assert zipped["weights_sha256"] == direct["weights_sha256"] and zipped["rdf_sha256"] == direct["rdf_sha256"]
    assert len(zipped["package_sha256"]) == 64
    # weights that are not the ones the description declares: refused, and the message says why
    bad = tmp_path / "bad"
    shutil.copytree(package, bad)
    shutil.copy(tmp_path / "other" / "weights.pt", bad / "weights.pt")
    with pytest.raises(fmbench.ModelLoadError, match="(?i)sha256"):
        fmbench.load_model(f"bioimageio:{bad}")


def test_a_zipped_package_may_name_its_description_bioimageio_yaml(package, tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "pkg.zip", "w") as z:
        for f in package.iterdir():
            z.write(f, "bioimageio.yaml" if f.name == "rdf.yaml" else f.name)
    src = fmbench.load_model(f"bioimageio:{tmp_path / 'pkg.zip'}").module.fmbench_source
    assert src["weights_sha256"] == fmbench.load_model(f"bioimageio:{package}").module.fmbench_source["weights_sha256"]
