"""Real-data loaders: every layout, and every kind of bad input with its one-line message."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from fmbench_plugins.folder import fmbench_resolve_dataset as resolve
from PIL import Image

from fmbench import DataError


def _img(h=32, w=32, seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    a = rng.integers(100, 4000, (h, w))
    return a.astype(dtype) if dtype != np.float32 else (a / 4000).astype(np.float32)


def _mask(h=32, w=32, labels=False):
    m = np.zeros((h, w), np.uint8)
    m[4:12, 4:12] = 1 if labels else 255
    m[16:24, 18:30] = 2 if labels else 255
    return m


def _tree(root, names=("a", "b", "c"), dtype=np.uint16):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, n in enumerate(names):
        tifffile.imwrite(root / "images" / f"{n}.tif", _img(seed=i, dtype=dtype))
        tifffile.imwrite(root / "masks" / f"{n}.tif", _mask())
    return root


def _open(ref, split="test"):
    return resolve(ref=ref, split=split, image_size=256)


# -- layouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_folder_images_and_masks_dirs(tmp_path, dtype):
    ds = _open(f"folder:{_tree(tmp_path / 'd', dtype=dtype)}")
    assert ds.synthetic is False and len(ds) == 3  # test = every image without split info
    s = ds[0]
    assert s.id == "a" and s.image.dtype == np.float32 and s.mask.dtype == bool
    assert s.image.shape == (32, 32) and s.image.dtype == np.float32
    # scaled so the 1st and 99.8th percentiles are 1 apart; nothing shifted or clipped
    p1, p998 = np.quantile(s.image, [0.01, 0.998], method="inverted_cdf")
    assert p998 - p1 == pytest.approx(1.0, abs=0.05) and s.image.max() >= p998 and s.image.min() <= p1
    assert s.mask.sum() == 64 + 96


def test_normalisation_is_the_protocol_percentile_rule_without_its_clip(tmp_path):
    """Measured images are only scaled (a model sees the same input whether the folder scaled
    them or not): shifting would lose their zero, clipping would cut into their own noise,
    which the noise-aware mode measures."""
    import torch

    from fmbench.data import normalize

    ds = _open(f"folder:{_tree(tmp_path / 'd')}")
    raw = tifffile.imread(tmp_path / "d" / "images" / "b.tif").astype(np.float64)
    image = ds[1].image
    np.testing.assert_allclose(normalize(torch.from_numpy(image)[None])[0].numpy(),
                               normalize(torch.from_numpy(raw)[None])[0].numpy(), atol=1e-6)
    scale = float(np.median(image[raw != 0] / raw[raw != 0]))
    np.testing.assert_allclose(image, scale * raw, rtol=1e-6, atol=1e-7)  # a scaling, nothing else


def test_folder_side_by_side_mask_suffix_png_and_instance_labels(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    Image.fromarray(_img(dtype=np.uint8)).save(d / "cell1.png")
    Image.fromarray(_mask(labels=True)).save(d / "cell1_mask.png")
    tifffile.imwrite(d / "cell2.tif", _img(seed=1))
    tifffile.imwrite(d / "cell2_mask.tif", _mask(labels=True).astype(np.uint16) * 7)
    (d / "notes.txt").write_text("ignored: not an image")
    ds = _open(f"folder:{d}")
    assert [ds[i].id for i in range(len(ds))] == ["cell1", "cell2"]
    assert ds[0].mask.sum() == ds[1].mask.sum() == 64 + 96


def test_grey_stored_as_rgb_png_needs_no_option(tmp_path):
    d = tmp_path / "rgb"
    d.mkdir()
    g = _img(dtype=np.uint8)
    Image.fromarray(np.stack([g, g, g, np.full_like(g, 255)], -1)).save(d / "x.png")  # RGBA, equal channels
    Image.fromarray(_mask()).save(d / "x_mask.png")
    assert _open(f"folder:{d}")[0].image.shape == (32, 32)


def test_folder_split_lists_and_hash_split(tmp_path):
    root = _tree(tmp_path / "d", names=[f"im{i:02d}" for i in range(20)])
    all_test = _open(f"folder:{root}")
    assert len(all_test) == 20
    parts = {s: {_open(f"folder:{root}?holdout=hash", s)[i].id for i in range(len(_open(f'folder:{root}?holdout=hash', s)))}
             for s in ("train", "val", "test")}
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"]) and not (parts["val"] & parts["test"])
    assert len(parts["train"] | parts["val"] | parts["test"]) == 20
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (16, 2, 2)
    (root / "test.txt").write_text("# held out\nim03\nim07.tif\n")
    (root / "train.txt").write_text("\n".join(f"im{i:02d}" for i in range(10)) + "\n")
    assert [s.id for s in (_open(f"folder:{root}")[i] for i in range(2))] == ["im03", "im07"]
    train = _open(f"folder:{root}", "train")
    val = _open(f"folder:{root}", "val")
    assert len(train) + len(val) == 10  # no val.txt: val is a hash share of train.txt
    assert not {train[i].id for i in range(len(train))} & {val[i].id for i in range(len(val))}


def test_folder_split_folders(tmp_path):
    _tree(tmp_path / "d" / "train", names=[f"t{i:02d}" for i in range(20)])
    _tree(tmp_path / "d" / "test", names=("x1",))
    assert [_open(f"folder:{tmp_path / 'd'}")[0].id] == ["x1"]
    train, val = _open(f"folder:{tmp_path / 'd'}", "train"), _open(f"folder:{tmp_path / 'd'}", "val")
    train_ids, val_ids = {train[i].id for i in range(len(train))}, {val[i].id for i in range(len(val))}
    assert len(train_ids | val_ids) == 20 and not train_ids & val_ids and val_ids  # no val/: a share of train/


def _ermito(root, with_val=False):
    names = [f"er_{i:03d}" for i in range(12)]
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, n in enumerate(names):
        tifffile.imwrite(root / "images" / f"{n}.tif", _img(seed=i))
        tifffile.imwrite(root / "masks" / f"{n}.tif", _mask())
    (root / "train.txt").write_text("\n".join(names[:8]) + "\n")
    (root / "test.txt").write_text("\n".join(f"{n}.tif" for n in names[8:]) + "\n")
    if with_val:
        (root / "val.txt").write_text(names[7] + "\n")
    return root


def test_ermito_layout_with_split_lists(tmp_path):
    root = _ermito(tmp_path / "ER")
    test = _open(f"ermito:{root}")
    assert [test[i].id for i in range(len(test))] == ["er_008", "er_009", "er_010", "er_011"]
    train, val = _open(f"ermito:{root}", "train"), _open(f"ermito:{root}", "val")
    assert len(train) + len(val) == 8 and len(val) >= 1
    assert test[0].mask.sum() == 64 + 96


def test_ermito_split_folders(tmp_path):
    for split, names in (("train", ("a", "b")), ("val", ("c",)), ("test", ("d", "e"))):
        d = tmp_path / "Mito" / split
        (d / "images").mkdir(parents=True)
        (d / "labels").mkdir()
        for i, n in enumerate(names):
            tifffile.imwrite(d / "images" / f"{n}.tif", _img(seed=i))
            tifffile.imwrite(d / "labels" / f"{n}.tif", _mask())
    assert len(_open(f"ermito:{tmp_path / 'Mito'}")) == 2
    assert _open(f"ermito:{tmp_path / 'Mito'}", "val")[0].id == "c"


def test_ermito_requires_split_information_and_binary_masks(tmp_path):
    root = _tree(tmp_path / "d")
    with pytest.raises(DataError, match=r"no split information: expected split folders"):
        _open(f"ermito:{root}")
    root = _ermito(tmp_path / "ER")
    tifffile.imwrite(root / "masks" / "er_009.tif", _mask(labels=True) * 3)
    with pytest.raises(DataError, match=r"mask masks/er_009.tif has values other than 0 and 255"):
        _open(f"ermito:{root}")


def _dsb(root, n=12):
    rng = np.random.default_rng(0)
    for k in range(n):
        sid = f"{k:04x}deadbeef"
        (root / sid / "images").mkdir(parents=True)
        (root / sid / "masks").mkdir()
        g = rng.integers(0, 60, (40, 48)).astype(np.uint8)
        g[5:15, 5:15] += 150
        rgba = np.stack([g, g, g, np.full_like(g, 255)], -1)
        Image.fromarray(rgba).save(root / sid / "images" / f"{sid}.png")
        for j, (y, x) in enumerate(((5, 5), (20, 30))):
            m = np.zeros((40, 48), np.uint8)
            m[y : y + 10, x : x + 10] = 255
            Image.fromarray(m).save(root / sid / "masks" / f"nucleus{j}.png")
    return root


def test_dsb2018_layout_merges_nuclei_and_splits_by_hash(tmp_path):
    root = _dsb(tmp_path / "stage1_train")
    ids = {}
    for split in ("train", "val", "test"):
        ds = _open(f"dsb2018:{root}", split)
        ids[split] = {ds[i].id for i in range(len(ds))}
    assert [len(ids[s]) for s in ("train", "val", "test")] == [10, 1, 1]
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"])
    ds = _open(f"dsb2018:{root}", "train")
    s = ds[0]
    assert s.image.shape == (40, 48) and s.mask.sum() == 200  # two 10x10 nuclei merged


def test_dsb2018_colour_images_average_rgb_or_take_a_channel(tmp_path):
    root = _dsb(tmp_path / "s", n=1)
    sid = next(root.iterdir()).name
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[10:20, 10:20, 1] = 250
    Image.fromarray(rgb).save(root / sid / "images" / f"{sid}.png")
    mean = _open(f"dsb2018:{root}?holdout=none")[0].image
    green = _open(f"dsb2018:{root}?holdout=none&channel=1")[0].image
    # the mean of the channels: 150 inside the square, 66.7 outside (scaled, never shifted)
    assert mean[15, 15] / mean[0, 0] == pytest.approx(150 / (200 / 3))
    assert green[15, 15] == 1.0 and green[0, 0] == 0.0


# -- bad input --------------------------------------------------------------------------------


def test_missing_mask(tmp_path):
    root = _tree(tmp_path / "d")
    (root / "masks" / "b.tif").unlink()
    with pytest.raises(DataError, match=r"^image images/b.tif has no mask: expected masks/b.tif"):
        _open(f"folder:{root}")
    flat = tmp_path / "flat"
    flat.mkdir()
    tifffile.imwrite(flat / "x.tif", _img())
    with pytest.raises(DataError, match=r"^image x.tif has no mask: expected x_mask.tif beside it"):
        _open(f"folder:{flat}")
    dsb = _dsb(tmp_path / "dsb", n=2)
    victim = sorted(dsb.iterdir())[1]
    for m in (victim / "masks").iterdir():
        m.unlink()
    with pytest.raises(DataError, match=rf"^image {victim.name}/images/{victim.name}.png has no mask"):
        _open(f"dsb2018:{dsb}")


def test_orphan_mask_is_an_error(tmp_path):
    root = _tree(tmp_path / "d")
    (root / "images" / "c.tif").unlink()
    with pytest.raises(DataError, match=r"^mask masks/c.tif has no image in images/"):
        _open(f"folder:{root}")


def test_size_mismatch(tmp_path):
    root = _tree(tmp_path / "d", names=("img_012",))
    tifffile.imwrite(root / "masks" / "img_012.tif", np.pad(_mask(), ((0, 32), (0, 32))))
    ds = _open(f"folder:{root}")
    with pytest.raises(DataError, match=r"^mask masks/img_012.tif is 64x64 but image images/img_012.tif is 32x32$"):
        ds[0]
    dsb = _dsb(tmp_path / "dsb", n=1)
    sid = next(dsb.iterdir()).name
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(dsb / sid / "masks" / "nucleus9.png")
    with pytest.raises(DataError, match=rf"^mask {sid}/masks/nucleus9.png is 10x10 but mask {sid}/masks/nucleus0.png is 40x48"):
        _open(f"dsb2018:{dsb}?holdout=none")


def test_unreadable_and_truncated_files(tmp_path):
    root = _tree(tmp_path / "d")
    (root / "masks" / "a.tif").write_bytes(b"this is not a tiff")
    with pytest.raises(DataError, match=r"^cannot read mask masks/a.tif: .*\(truncated or not a TIFF/PNG file\?\)"):
        _open(f"folder:{root}")
    root = _tree(tmp_path / "e")
    data = (root / "images" / "b.tif").read_bytes()
    (root / "images" / "b.tif").write_bytes(data[: len(data) // 2])
    ds = _open(f"folder:{root}")
    with pytest.raises(DataError, match=r"^cannot read image images/b.tif: "):
        ds[1]
    flat = tmp_path / "png"
    flat.mkdir()
    Image.fromarray(_img(dtype=np.uint8)).save(flat / "p.png")
    Image.fromarray(_mask()).save(flat / "p_mask.png")
    data = (flat / "p.png").read_bytes()
    (flat / "p.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"^cannot read image p.png: "):
        _open(f"folder:{flat}")[0]


def test_stack_needs_a_plane_and_the_option_selects_it(tmp_path):
    root = _tree(tmp_path / "d", names=("s",))
    stack = np.stack([_img(seed=k) for k in range(5)])
    tifffile.imwrite(root / "images" / "s.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(DataError, match=r"^image images/s.tif is a 3-D stack of 5 planes \(shape 5x32x32\), a 2-D "
                                        r"image is expected: select one plane of every image and mask with "
                                        r"folder:.*\?plane=N \(N from 0 to 4\)$"):
        _open(f"folder:{root}")[0]
    img = _open(f"folder:{root}?plane=3")[0].image
    assert img.shape == (32, 32)
    with pytest.raises(DataError, match=r"has 5 planes; plane=7 is out of range"):
        _open(f"folder:{root}?plane=7")[0]
    # a mask stack beside the image stack: ?plane=N takes the same plane of both
    masks = np.stack([(_img(seed=k) > 2000).astype(np.uint8) for k in range(5)])
    tifffile.imwrite(root / "masks" / "s.tif", masks, imagej=True, metadata={"axes": "ZYX"})
    assert np.array_equal(_open(f"folder:{root}?plane=3")[0].mask, masks[3] > 0)
    # three planes without metadata are stored as one colour image: ?plane=N still picks one
    for sub, arr in (("images", stack[:3]), ("masks", masks[:3])):  # as tifffile < 2026 stores 3 planes
        tifffile.imwrite(root / sub / "s.tif", arr, photometric="rgb", planarconfig="separate")
    got = _open(f"folder:{root}?plane=1")[0]
    assert np.array_equal(got.mask, masks[1] > 0) and got.image.shape == (32, 32)


def test_multichannel_needs_a_channel_and_the_option_selects_it(tmp_path):
    root = _tree(tmp_path / "d", names=("m",))
    tifffile.imwrite(root / "images" / "m.tif", np.stack([_img(seed=k) for k in range(3)], -1), photometric="rgb")
    with pytest.raises(DataError, match=r"^image images/m.tif has 3 channels \(shape 32x32x3\), a 2-D image is expected: "
                                        r"select one with folder:.*\?channel=N \(N from 0 to 2\)$"):
        _open(f"folder:{root}")[0]
    expected = _open(f"folder:{root}?channel=1")[0].image
    single = tmp_path / "one"
    _tree(single, names=("m",))
    tifffile.imwrite(single / "images" / "m.tif", _img(seed=1))
    np.testing.assert_array_equal(expected, _open(f"folder:{single}")[0].image)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^folder:.*empty: no images in .*expected images/ and masks/"):
        _open(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match=r"^dsb2018:.*: no samples in"):
        _open(f"dsb2018:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match=r"does not exist"):
        _open(f"folder:{tmp_path / 'missing'}")


def test_no_foreground_anywhere(tmp_path):
    root = _tree(tmp_path / "d")
    for n in "abc":
        tifffile.imwrite(root / "masks" / f"{n}.tif", np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError, match=r"^no mask in folder:.* \(split 'test', 3 masks, e.g. masks/a.tif\) has any foreground"):
        _open(f"folder:{root}")


def test_bad_options(tmp_path):
    root = _tree(tmp_path / "d")
    with pytest.raises(DataError, match=r"unknown option 'chanel' \(options: channel, plane, holdout\)"):
        _open(f"folder:{root}?chanel=1")
    with pytest.raises(DataError, match=r"channel must be a whole number"):
        _open(f"folder:{root}?channel=red")
    assert resolve(ref="other:thing", split="test", image_size=256) is None


# -- through the real CLI ---------------------------------------------------------------------


def test_cli_preview_and_export_of_a_folder(cli, tmp_path):
    root = _tree(tmp_path / "d")
    r = cli("data", "preview", "--dataset", f"folder:{root}", "--out", str(tmp_path / "p.png"), "--n", "2")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "p.png").size == (32 * 2 + 4, 2 * 32 + 4)
    r = cli("data", "export", "--dataset", f"folder:{root}", "--out", str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "x" / "masks").iterdir()) == ["a.tif", "b.tif", "c.tif"]


@pytest.mark.parametrize("case", ["size", "stack"])
def test_cli_bad_input_is_one_line_and_exit_1(cli, tmp_path, case):
    root = _tree(tmp_path / "d", names=("img_012",))
    if case == "size":
        tifffile.imwrite(root / "masks" / "img_012.tif", np.pad(_mask(), ((0, 32), (0, 32))))
        expected = "error: mask masks/img_012.tif is 64x64 but image images/img_012.tif is 32x32"
    else:
        tifffile.imwrite(root / "images" / "img_012.tif", np.stack([_img()] * 4), imagej=True, metadata={"axes": "ZYX"})
        expected = "error: image images/img_012.tif is a 3-D stack of 4 planes"
    r = cli("data", "preview", "--dataset", f"folder:{root}", "--out", str(tmp_path / "p.png"))
    assert r.returncode == 1
    assert expected in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists()


def test_two_images_with_one_name_are_an_error_not_one_image(tmp_path):
    root = _tree(tmp_path / "d")
    Image.fromarray(_img(dtype=np.uint8)).save(root / "images" / "a.png")  # a.tif is there too
    with pytest.raises(DataError, match=r"^images images/a.png and images/a.tif have the same name 'a'|"
                                        r"^images images/a.tif and images/a.png have the same name 'a'"):
        _open(f"folder:{root}")
    flat = tmp_path / "flat"
    flat.mkdir()
    for ext in ("tif", "png"):
        Image.fromarray(_img(dtype=np.uint8)).save(flat / f"x.{ext}")
    tifffile.imwrite(flat / "x_mask.tif", _mask())
    with pytest.raises(DataError, match=r"have the same name 'x'"):
        _open(f"folder:{flat}")


def test_a_four_plane_stack_saved_without_axes_is_four_channels_not_rgba(tmp_path):
    """tifffile reads a plain (4, H, W) array as four samples; the fourth is kept (it is a plane
    of the stack, not alpha: alpha is dropped only where it is constant), so every plane can be
    chosen."""
    root = _tree(tmp_path / "d", names=("s",))
    planes = [_img(seed=k) for k in range(4)]
    tifffile.imwrite(root / "images" / "s.tif", np.stack(planes), photometric="rgb", planarconfig="separate")
    with pytest.raises(DataError, match=r"has 4 channels \(shape 4x32x32\).*\?channel=N \(N from 0 to 3\)$"):
        _open(f"folder:{root}")[0]
    opt = "channel"
    single = tmp_path / "one"
    _tree(single, names=("s",))
    tifffile.imwrite(single / "images" / "s.tif", planes[3])
    np.testing.assert_array_equal(_open(f"folder:{root}?{opt}=3")[0].image, _open(f"folder:{single}")[0].image)
    # an RGBA image of a grey one (constant alpha) needs no option
    rgba = np.stack([planes[0] // 16] * 3 + [np.full_like(planes[0], 255)], -1).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "images" / "s.png")
    (root / "images" / "s.tif").unlink()
    assert _open(f"folder:{root}")[0].image.shape == (32, 32)


@pytest.mark.parametrize("case", ["sparse", "constant"])
def test_normalisation_of_a_nearly_black_or_constant_image_is_finite(tmp_path, case):
    root = _tree(tmp_path / "d", names=("z",))
    arr = np.zeros((32, 32), np.uint16) if case == "sparse" else np.full((32, 32), 7, np.uint16)
    if case == "sparse":
        arr[10, 10] = 900  # one bright pixel: the 1st and 99.8th percentiles are both 0
    tifffile.imwrite(root / "images" / "z.tif", arr)
    image = _open(f"folder:{root}")[0].image
    assert np.isfinite(image).all() and (image.max() == pytest.approx(1.0) if case == "sparse" else True)


def test_plane_leaves_grey_masks_stored_as_colour_alone(tmp_path):
    """?plane=N picks a sample only from a planar colour file whose samples differ (a stack saved
    without metadata): a grey mask saved as RGB or grey+alpha PNG beside an image stack is read
    as the grey mask it is."""
    from PIL import Image

    root = _tree(tmp_path / "d", names=("s",))
    stack = np.stack([_img(seed=k) for k in range(5)])
    tifffile.imwrite(root / "images" / "s.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    grey = _mask()
    for mode in ("RGB", "LA"):
        (root / "masks" / "s.tif").unlink(missing_ok=True)
        Image.fromarray(grey).convert(mode).save(root / "masks" / "s.png")
        got = _open(f"folder:{root}?plane=4")[0]
        assert np.array_equal(got.mask, grey > 0) and np.array_equal(got.image, _open(f"folder:{root}?plane=4")[0].image)
