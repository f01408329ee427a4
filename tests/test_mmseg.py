"""The mmseg: adapter (plugins/adapters/mmseg.py) on mmsegmentation's own shipped configs.

Needs the mmseg extra (mmsegmentation, mmengine, mmcv or mmcv-lite); skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import urllib.request
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("mmseg") is None:
    pytest.skip("mmsegmentation is not installed (the mmseg extra, see docs/adapters.md)", allow_module_level=True)
import mmseg  # noqa: E402  (installed but broken, e.g. cv2 missing for mmcv: fail, do not skip)

from fmbench.checkpoint import save_checkpoint  # noqa: E402
from fmbench.errors import CheckpointError, ModelLoadError  # noqa: E402
from fmbench.model import build_model, load_model, probe  # noqa: E402

SHIPPED = Path(mmseg.__file__).parent / ".mim" / "configs"
UNET = "unet/unet-s5-d16_fcn_4xb4-40k_drive-64x64.py"  # slide inference, 64x64 crops
SEGFORMER = "segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py"  # backbone init_cfg: a download URL
MMCV_LITE = importlib.util.find_spec("mmcv._ext") is None


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the mmseg adapter tried to download something")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("config", [UNET, SEGFORMER])
def test_shipped_configs_follow_the_contract(config, pm, registry, no_downloads):
    torch.manual_seed(0)
    module, spec = build_model(f"mmseg:{SHIPPED / config}", {}, registry, pm)
    assert spec is None
    assert probe(module, 64, torch.device("cpu"), batch=1) == 1
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in module.modules())
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())
    # mmseg's own state-dict names, so mmseg checkpoints load as they are
    assert {k.split(".")[0] for k in module.state_dict()} <= {"backbone", "decode_head", "auxiliary_head", "neck"}
    # 72x56 is no multiple of 32: padded for the model, logits cropped back; the gradient reaches
    # every input pixel through the padding, the channel replication and the normalisation
    x = torch.rand(1, 1, 72, 56, requires_grad=True)
    out = module.eval()(x)
    assert out.shape == (1, 1, 72, 56)
    out.logsumexp(dim=(2, 3)).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).float().mean() > 0.9


def test_classes_argument_sets_the_heads(pm, registry):
    module, _ = build_model(f"mmseg:{SEGFORMER}", {"classes": 3}, registry, pm)
    assert probe(module, 32, torch.device("cpu"), batch=1) == 3
    assert module.decode_head.conv_seg.out_channels == 3
    with pytest.raises(ModelLoadError, match=r"mmseg: models take no model argument width \(they take: classes: "):
        build_model(f"mmseg:{SEGFORMER}", {"width": 3}, registry, pm)
    with pytest.raises(ModelLoadError, match=r"model argument classes=0: expected a positive integer"):
        build_model(f"mmseg:{SEGFORMER}", {"classes": 0}, registry, pm)


@pytest.mark.filterwarnings("ignore::UserWarning:mmseg")  # mmseg's own init_model gives advice
def test_checkpoints_cross_between_mmseg_and_fmbench(tmp_path, pm, registry):
    """A model built by mmseg's own init_model, saved as mmseg lays out its checkpoints, loads
    through --checkpoint and gives mmseg's own test_step logits (data preprocessor included)
    exactly; an fmbench checkpoint of the adapter's model loads back into mmseg strictly."""
    import numpy as np
    from mmengine.runner import load_checkpoint
    from mmseg.apis import init_model
    from mmseg.structures import SegDataSample

    ref = f"mmseg:{SEGFORMER}"
    build_model(ref, {}, registry, pm)  # imports mmseg's models the adapter's way (mmcv-lite or not)
    torch.manual_seed(1)
    raw = init_model(str(SHIPPED / SEGFORMER), device="cpu", cfg_options={"model.decode_head.num_classes": 2})
    meta = {"mmseg_version": mmseg.__version__,
            "dataset_meta": {"classes": ("background", "nucleus"), "palette": [[0, 0, 0], [255, 255, 255]]}}
    torch.save({"meta": meta, "state_dict": raw.state_dict()}, tmp_path / "mmseg.pth")
    loaded = load_model(ref, {"classes": 2}, registry, pm, checkpoint=str(tmp_path / "mmseg.pth"))
    assert loaded.meta == meta and loaded.weights_sha256

    img = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    data = {"inputs": [torch.from_numpy(np.repeat(img[None], 3, 0))],
            "data_samples": [SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))]}
    with torch.no_grad():
        expected = raw.eval().test_step(data)[0].seg_logits.data
        ours = loaded.module(torch.from_numpy(img).float().div(255)[None, None])[0]
    assert expected.shape == ours.shape == (2, 64, 64)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)

    save_checkpoint(tmp_path / "fm.pt", loaded.module, {"note": "from fmbench"})
    torch.manual_seed(2)
    back = init_model(str(SHIPPED / SEGFORMER), device="cpu", cfg_options={"model.decode_head.num_classes": 2})
    load_checkpoint(back, str(tmp_path / "fm.pt"), map_location="cpu", strict=True, logger="silent")
    with torch.no_grad():
        torch.testing.assert_close(back.eval().test_step(data)[0].seg_logits.data, expected)


def test_runner_training_checkpoint_is_refused_in_one_line(tmp_path, pm, registry):
    """mmengine's Runner also saves its message hub (HistoryBuffer objects): a weights-only load
    refuses the file, in one line, and nothing is unpickled beyond tensors."""
    from mmengine.logging import HistoryBuffer

    module, _ = build_model(f"mmseg:{SEGFORMER}", {}, registry, pm)
    torch.save({"meta": {"iter": 10}, "state_dict": module.state_dict(),
                "message_hub": {"log_scalars": {"train/loss": HistoryBuffer([0.5], [1])}}}, tmp_path / "iter_10.pth")
    with pytest.raises(CheckpointError, match=r"iter_10.pth could not be read as a weights-only torch file") as err:
        load_model(f"mmseg:{SEGFORMER}", {}, registry, pm, checkpoint=str(tmp_path / "iter_10.pth"))
    assert "\n" not in str(err.value)


def test_config_that_does_not_build(tmp_path, pm, registry):
    (tmp_path / "bad.py").write_text(
        "model = dict(type='EncoderDecoder', backbone=dict(type='NoSuchNet'),\n"
        "             decode_head=dict(type='FCNHead', in_channels=8, channels=8, num_classes=2))\n")
    with pytest.raises(ModelLoadError, match=r"mmseg config .*bad.py does not build: KeyError: .*NoSuchNet") as err:
        build_model(f"mmseg:{tmp_path / 'bad.py'}", {}, registry, pm)
    assert "\n" not in str(err.value)
    (tmp_path / "inherits.py").write_text("_base_ = ['./missing_base.py']\n")
    with pytest.raises(ModelLoadError, match=r"mmseg config .*inherits.py could not be read: FileNotFoundError"):
        build_model(f"mmseg:{tmp_path / 'inherits.py'}", {}, registry, pm)
    (tmp_path / "empty.py").write_text("crop_size = (64, 64)\n")
    with pytest.raises(ModelLoadError, match=r"empty.py defines no `model` dict"):
        build_model(f"mmseg:{tmp_path / 'empty.py'}", {}, registry, pm)


@pytest.mark.skipif(not MMCV_LITE, reason="full mmcv is installed: its compiled ops are real")
def test_compiled_ops_under_mmcv_lite_refuse_with_a_message(pm, registry):
    with pytest.raises(ModelLoadError, match=r"ccnet.*does not build: mmcv.ops.CrissCrossAttention is one of "
                                             r"mmcv's compiled ops, which mmcv-lite does not have: this config "
                                             r"needs full mmcv \(see docs/adapters.md\)"):
        build_model("mmseg:ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py", {}, registry, pm)


def test_missing_config_is_one_line_with_a_suggestion(tmp_path, cli):
    r = cli("eval", "--model", "mmseg:segformer/segformer_mit-b0_8xb2-160k_ade20k-512x513.py", "--random-init",
            "--dataset", "nucleus", "--n-images", "1", "--image-size", "64", "--corruptions", "none",
            "--attacks", "none", "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: mmseg config segformer/segformer_mit-b0_8xb2-160k_ade20k-512x513.py does "
                               "not exist, here or among mmsegmentation's shipped configs in "), lines[0]
    assert "did you mean 'segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'" in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_eval_through_the_cli(tmp_path, cli):
    r = cli("eval", "--model", f"mmseg:{SEGFORMER}", "--random-init", "--dataset", "nucleus", "--n-images", "1",
            "--image-size", "64", "--corruptions", "none", "--attacks", "fgsm", "--out", str(tmp_path / "r.json"),
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # mmengine's per-parameter init log and openmmlab's advice warnings stay out of the output
    assert "mmengine" not in r.stdout + r.stderr and "Warning" not in r.stderr
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["model"]["ref"] == f"mmseg:{SEGFORMER}"
    assert res["model"]["parameters"] > 3_000_000  # SegFormer-B0, not a stand-in
    assert list(res["per_image"]["iou"]) == ["reference", "fgsm@1/255", "fgsm@2/255", "fgsm@4/255", "fgsm@8/255"]
    assert res["passes"]["backward_calls"] == 4  # one input gradient per FGSM budget, through the adapter
