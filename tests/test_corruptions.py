"""The corruption suite: exact SNR, blur, space-variant blur, artefacts, replay, masks, errors."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from fmbench.corruption import (
    Sensor,
    expected_snr,
    gaussian_blur,
    measured_snr,
    photon_scale,
    signal_mask,
)
from fmbench.data import iter_batches
from fmbench.errors import DataError, ProtocolError, UnknownNameError
from fmbench.plugins import get_registry, make_plugin_manager
from fmbench.protocol import Camera
from fmbench.seeding import generators

CAMERA = Camera()
REGISTRY = get_registry(make_plugin_manager(load_entrypoints=False))
SYNTHETIC = sorted(n for n, s in REGISTRY.datasets.items() if s.synthetic)
NAMES = list(REGISTRY.corruptions)


@functools.lru_cache(maxsize=None)
def batch(dataset: str = "nucleus", n: int = 4, size: int = 64):
    ds = REGISTRY.dataset(dataset).factory(split="test", image_size=size)
    b = next(iter_batches(ds, n, n))
    return b.image, b.mask, [f"{dataset}/{i}" for i in b.ids]


def corrupt(name, level, x, mask, keys, seed=0):
    sensor = Sensor(x, mask, CAMERA, 8.0)
    return REGISTRY.corruption(name).factory()(x, mask, level, sensor, generators(seed, keys, f"{name}@{level:g}"))


def high_freq_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean squared Laplacian per image, relative to the image's variance (scale-free sharpness)."""
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return lap.pow(2).flatten(1).mean(1) / x.flatten(1).var(1)


# --- exact SNR --------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", SYNTHETIC)
def test_noise_snr_matches_nominal_at_every_level(dataset):
    x, mask, keys = batch(dataset, n=12, size=96)
    sensor = Sensor(x, mask, CAMERA, 8.0)
    noise = REGISTRY.corruption("noise")
    errors = {}
    for level in noise.levels:
        y, _ = corrupt("noise", level, x, mask, keys)
        snr = measured_snr(y, sensor.mean(x, snr=level), mask).mean().item()
        errors[level] = snr / level - 1
    assert all(abs(e) <= 0.03 for e in errors.values()), errors


def test_photon_scale_solves_the_snr_exactly():
    x, mask, _ = batch()
    for snr in (8.0, 1.0):
        a = photon_scale(x, mask, snr, CAMERA.read_noise_e)
        assert torch.allclose(expected_snr(x, mask, a, CAMERA.read_noise_e), torch.full((4,), snr, dtype=torch.float64))


def test_bleaching_lowers_the_snr_at_the_same_exposure():
    x, mask, keys = batch(n=4, size=64)
    sensor = Sensor(x, mask, CAMERA, 8.0)
    snrs = [expected_snr(x * 2.0**-k, mask, sensor.scale, CAMERA.read_noise_e).mean().item() for k in (0, 1, 5)]
    assert snrs[0] == pytest.approx(8.0) and snrs[0] > snrs[1] > snrs[2] and snrs[2] < 2.0
    y, _ = corrupt("bleaching", 5.0, x, mask, keys)
    measured = measured_snr(y, sensor.mean(x * 2.0**-5), mask).mean().item()
    assert measured == pytest.approx(snrs[2], rel=0.15)


# --- blur ---------------------------------------------------------------------------------------

def test_gaussian_blur_matches_scipy_and_conserves_light():
    from scipy import ndimage

    x = torch.rand(2, 1, 40, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = gaussian_blur(x, 2.5)
    ref = ndimage.gaussian_filter(x[1, 0].numpy(), 2.5, mode="reflect", truncate=4.0)
    assert np.abs(y[1, 0].numpy() - ref).max() < 1e-12
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)))


@pytest.mark.parametrize("name", ["sib", "svb"])
def test_blur_sharpness_falls_with_severity(name):
    x, mask, keys = batch(n=4, size=96)
    c = REGISTRY.corruption(name).factory()
    gens = generators(0, keys, name)
    params = c.sample(x, mask, 2.0, gens)  # one defocus geometry for every level
    sharp = [high_freq_energy(x).mean().item()]
    sharp += [high_freq_energy(c.optics(x, mask, lv, params)).mean().item() for lv in c.levels]
    assert all(a > b for a, b in zip(sharp, sharp[1:])), sharp
    assert sharp[-1] < 0.2 * sharp[0]


def local_sharpness(blurred, x, region):
    """Squared-Laplacian energy of ``blurred`` relative to ``x`` inside a boolean region."""
    def lap(t):
        return (4 * t[..., 1:-1, 1:-1] - t[..., :-2, 1:-1] - t[..., 2:, 1:-1] - t[..., 1:-1, :-2] - t[..., 1:-1, 2:])

    r = region[..., 1:-1, 1:-1]
    return (lap(blurred).pow(2) * r).sum().item() / (lap(x).pow(2) * r).sum().item()


@pytest.mark.parametrize("mode", [0.25, 0.75])  # tilted focal plane, field curvature
def test_svb_is_sharp_in_focus_and_blurred_where_defocused(mode):
    from fmbench_plugins.blur import SpaceInvariantBlur, SpaceVariantBlur

    x, mask, _ = batch(n=4, size=96)
    svb = SpaceVariantBlur()
    params = {"map": torch.tensor([[mode, 0.3, 0.6, 0.4]] * 4)}
    w = svb.weight_map(x, params)
    assert w.amin().item() < 0.02 and w.amax().item() == pytest.approx(1.0)
    y = svb.optics(x, mask, 8.0, params)
    near, far = w < 0.05, w > 0.7
    s_near, s_far = local_sharpness(y, x, near), local_sharpness(y, x, far)
    assert s_near > 0.5 and s_far < 0.05 and s_near > 10 * s_far
    # the space-invariant blur at the same level is equally blurred everywhere
    z = SpaceInvariantBlur().optics(x, mask, 8.0, {})
    assert local_sharpness(z, x, near) < 0.05 and local_sharpness(z, x, far) < 0.05


def test_svb_geometry_is_drawn_per_image():
    x, mask, keys = batch(n=4, size=64)
    c = REGISTRY.corruption("svb").factory()
    maps = c.weight_map(x, c.sample(x, mask, 8.0, generators(0, keys, "svb@8")))
    assert not torch.equal(maps[0], maps[1])


# --- artefacts: each does what its docstring says ------------------------------------------------

def test_shading_corner_receives_the_level():
    from fmbench_plugins.artefacts import Shading

    x, mask, keys = batch(n=4, size=64)
    c = Shading()
    prof = c.profile(x, 0.3, c.sample(x, mask, 0.3, generators(0, keys, "s")))
    assert torch.allclose(prof.amin((1, 2, 3)), torch.full((4,), 0.3), atol=1e-6)
    assert (prof.amax((1, 2, 3)) > 0.98).all()


def test_saturation_clips_the_stated_fraction_of_the_signal():
    x, mask, keys = batch(n=4, size=96)
    sensor = Sensor(x, mask, CAMERA, 8.0)
    for level in (0.05, 0.5):
        y, _ = corrupt("saturation", level, x, mask, keys)
        m = signal_mask(x, mask)
        top = y.flatten(1).amax(1, keepdim=True)
        expected_clipped = (sensor.mean(x).flatten(1) >= top) & m
        frac = (expected_clipped.sum(1) / m.sum(1)).mean().item()
        assert frac == pytest.approx(level, abs=0.03)


def test_hot_pixel_fraction():
    from fmbench_plugins.artefacts import HotPixels

    x, mask, keys = batch(n=4, size=96)
    sensor = Sensor(x, mask, CAMERA, 8.0)
    c = HotPixels()
    params = c.sample(x, mask, 1e-2, generators(0, keys, "h"))
    expected = sensor.mean(x)
    hot = c.detector(expected, expected, mask, 1e-2, params, sensor) > expected
    assert 0.007 < hot.float().mean().item() < 0.013
    peak = (expected - CAMERA.offset_adu).flatten(1).amax(1)
    assert ((c.detector(expected, expected, mask, 1e-2, params, sensor) - expected).flatten(1).amax(1) > peak).all()


def test_background_and_haze_add_light_and_noise():
    x, mask, keys = batch(n=4, size=64)
    for name, level in (("background", 2.5), ("haze", 2.0)):
        c = REGISTRY.corruption(name).factory()
        params = c.sample(x, mask, level, generators(0, keys, name))
        out = c.optics(x, mask, level, params)
        assert (out >= x).all() and out.sum() > 1.5 * x.sum()


def test_fixed_pattern_column_stripes_have_the_stated_size():
    from fmbench_plugins.artefacts import FixedPattern

    x, mask, keys = batch(n=4, size=96)
    sensor = Sensor(x, mask, CAMERA, 8.0)
    expected = sensor.mean(x)
    c = FixedPattern()
    for level in (0.5, 8.0):
        params = c.sample(x, mask, level, generators(0, keys, "f"))
        added = c.detector(expected, expected, mask, level, params, sensor) - expected
        # a column's mean keeps its column offset; rows, pixels and gain average out
        col_std = added.mean(2).std(-1).mean().item()
        assert col_std == pytest.approx(level * CAMERA.read_noise_e, rel=0.3)


# --- replay, masks, shapes, dtypes -----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_replay_one_image_alone_gives_the_same_output(name):
    x, mask, keys = batch(n=3, size=64)
    level = REGISTRY.corruption(name).levels[-1]
    y1, m1 = corrupt(name, level, x, mask, keys)
    y2, m2 = corrupt(name, level, x, mask, keys)
    y3, m3 = corrupt(name, level, x[2:], mask[2:], keys[2:])
    assert torch.equal(y1, y2) and torch.equal(m1, m2)
    assert torch.equal(y1[2:], y3) and torch.equal(m1[2:], m3)
    y4, _ = corrupt(name, level, x, mask, keys, seed=1)
    assert not torch.equal(y1, y4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_and_masks(name, dtype):
    x, mask, keys = batch(n=2, size=64)
    spec = REGISTRY.corruption(name)
    for level in (spec.levels[0], spec.levels[-1]):
        y, m = corrupt(name, level, x.to(dtype), mask, keys)
        assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
        assert m.shape == mask.shape and m.dtype == torch.bool
        if not spec.geometric:
            assert torch.equal(m, mask)
    assert spec.geometric == (name == "pixel-size")


def test_pixel_size_resamples_the_mask_with_nearest_neighbour():
    from fmbench_plugins.artefacts import PixelSize

    x, mask, keys = batch(n=3, size=64)
    c = PixelSize()
    params = c.sample(x, mask, 2.0, generators(0, keys, "p"))
    m = c.warp_mask(mask, 2.0, params)
    grid = c.grid(x.shape, 2.0, params).double()
    h, w = mask.shape[1:]
    # pixel-centre convention (align_corners=False): index = ((g + 1) * size - 1) / 2
    iy = (((grid[..., 1] + 1) * h - 1) / 2).round().long().clamp(0, h - 1)
    ix = (((grid[..., 0] + 1) * w - 1) / 2).round().long().clamp(0, w - 1)
    ref = torch.stack([mask[b][iy[b], ix[b]] for b in range(3)])
    assert torch.equal(m, ref)
    assert not torch.equal(m, mask) and m.any(dim=(1, 2)).all()
    # the image follows the mask: structures stay brighter than background
    xo = c.optics(x, mask, 2.0, params)
    assert all(xo[b, 0][m[b]].mean() > xo[b, 0][~m[b]].mean() for b in range(3) if (~m[b]).any())


# --- bad input ----------------------------------------------------------------------------------

def test_bad_input_gives_one_clear_error():
    x, mask, keys = batch(n=2, size=64)
    sensor = Sensor(x, mask, CAMERA, 8.0)
    sib = REGISTRY.corruption("sib").factory()
    gens = generators(0, keys, "sib")
    with pytest.raises(UnknownNameError, match="unknown corruption 'sibb'.*did you mean 'sib'"):
        REGISTRY.corruption("sibb")
    with pytest.raises(ProtocolError, match=r"corruption 'sib' has no severity 5 \(it accepts 2, 3, 4, 6, 8\)"):
        sib(x, mask, 5.0, sensor, gens)
    with pytest.raises(ProtocolError, match="a severity is a number"):
        sib(x, mask, "8", sensor, gens)
    with pytest.raises(DataError, match=r"expected a \(B, 1, H, W\) tensor, got shape \(2, 64, 64\)"):
        sib(x[:, 0], mask, 8.0, sensor, gens)
    with pytest.raises(DataError, match="expected a float32 or float64 tensor, got dtype torch.int64"):
        sib(x.long(), mask, 8.0, sensor, gens)
    with pytest.raises(DataError, match=r"expected a mask of shape \(2, 64, 64\)"):
        sib(x, mask[:, :32], 8.0, sensor, gens)
    with pytest.raises(DataError, match="expected 2 torch.Generator objects"):
        sib(x, mask, 8.0, sensor, gens[:1])


def test_protocol_tiers_validate_and_cover_every_corruption():
    quick, full = REGISTRY.protocol("quick"), REGISTRY.protocol("full")
    quick.validate(REGISTRY)
    full.validate(REGISTRY)
    assert {e.name for e in full.corruptions} == set(NAMES)
    assert {e.name for e in quick.corruptions} == set(NAMES)
    for e in full.corruptions:  # every severity (noise: SNR 8 is the reference condition itself)
        levels = REGISTRY.corruption(e.name).levels
        assert e.levels == (levels[1:] if e.name == "noise" else levels)
    for e in quick.corruptions:
        if e.name in ("noise", "sib", "svb"):
            assert e.levels == next(f.levels for f in full.corruptions if f.name == e.name)


def test_cli_gallery_unknown_corruption(cli, tmp_path):
    out = tmp_path / "g.png"
    proc = cli("corruptions", "gallery", "--dataset", "nucleus", "--out", str(out), "--corruption", "nosie")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "unknown corruption 'nosie'; did you mean 'noise'?" in proc.stderr
    assert not out.exists()


def test_cli_gallery_writes_a_montage(cli, tmp_path):
    from PIL import Image

    out = tmp_path / "g.png"
    proc = cli("corruptions", "gallery", "--dataset", "nucleus", "--out", str(out), "--image-size", "64",
               "--corruption", "noise", "--corruption", "pixel-size", "--index", "1")
    assert proc.returncode == 0, proc.stderr
    img = Image.open(out)
    # label column + the quick protocol's 5 noise levels (SNR 5-1) x (64 px + gap); title + 3 rows
    # (reference, noise, pixel-size at the protocol's 3 severities)
    assert img.size == (200 + 5 * 68, 22 + 3 * (64 + 18 + 4))
    proc = cli("corruptions", "gallery", "--dataset", "nucleus", "--out", str(out), "--index", "999999")
    assert proc.returncode == 1 and "already exists; pass --overwrite" in proc.stderr  # the user's file is kept
    proc = cli("corruptions", "gallery", "--dataset", "nucleus", "--out", str(out), "--index", "999999", "--overwrite")
    assert proc.returncode == 1 and "out of range" in proc.stderr
    assert img.size == Image.open(out).size  # a failed run leaves the file as it was
