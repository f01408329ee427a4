"""Throughput of fmbench's noise and blur against `imagecorruptions`, side by side.

Usage: ``python benchmarks/corruptions.py [--images 32] [--size 256] [--repeats 3] [--threads N]``

Both libraries corrupt the same synthetic nucleus images (256 x 256 by default) on the CPU in
the same process.  fmbench runs batched torch on ``(B, 1, H, W)`` tensors, including the
per-image photon-scale solve and the per-image generators of the protocol; `imagecorruptions`
runs one image at a time, as its API does.  The peer is timed two ways: through its public
``corrupt()`` (which turns a grayscale image into RGB first, as a user gets it) and through its
bare corruption function on the single-channel array (its lowest cost for our images).  The
printed ratios are fmbench's throughput over the peer's.

`imagecorruptions` 1.1.2's ``gaussian_blur`` passes ``multichannel=True`` to scikit-image,
which newer scikit-image rejects; when that happens we time the same call with the
replacement keyword (``channel_axis=-1``) and say so.  Exits 0 with "skipped" when
`imagecorruptions` is not installed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings


def _timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, like the peer; on a busy 2-core machine two "
                             "threads oversubscribe and run several times slower)")
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import imagecorruptions
            from imagecorruptions import corruptions as peer
        except ImportError:
            print("skipped: imagecorruptions is not installed "
                  "(pip install 'setuptools<81' && pip install --no-deps imagecorruptions scikit-image "
                  "opencv-python-headless)")
            return 0
    import numpy as np
    import torch

    from fmbench.corruption import Sensor, gaussian_blur
    from fmbench.data import iter_batches, normalize
    from fmbench.plugins import get_registry, make_plugin_manager
    from fmbench.protocol import Camera
    from fmbench.seeding import generators

    torch.set_num_threads(args.threads)
    registry = get_registry(make_plugin_manager(load_entrypoints=False))
    dataset = registry.dataset("nucleus").factory(split="test", image_size=args.size)
    batch = next(iter_batches(dataset, args.images, args.images))
    x, mask = batch.image, batch.mask
    keys = [f"nucleus/{i}" for i in batch.ids]
    camera = Camera()
    n = x.shape[0]
    # the peer's input: the same images, normalised and quantised as its API expects (uint8)
    gray = [(normalize(x[i:i + 1])[0, 0].numpy() * 255).round().astype(np.uint8) for i in range(n)]

    noise = registry.corruption("noise").factory()
    sib = registry.corruption("sib").factory()

    def ours_noise():
        sensor = Sensor(x, mask, camera, 8.0)
        noise(x, mask, 2.0, sensor, generators(0, keys, "noise@2"))

    def ours_sib():
        sensor = Sensor(x, mask, camera, 8.0)
        sib(x, mask, 4.0, sensor, generators(0, keys, "sib@4"))

    def ours_blur_only():
        gaussian_blur(x, 3.0)

    from skimage.filters import gaussian as sk_gaussian

    notes = []
    try:
        peer.gaussian_blur(gray[0], 3)
        peer_gaussian_blur = peer.gaussian_blur
    except TypeError:
        notes.append("imagecorruptions.gaussian_blur fails on this scikit-image (multichannel=); timed the same "
                     "call with channel_axis=-1")

        def peer_gaussian_blur(img, severity=1):
            c = [1, 2, 3, 4, 6][severity - 1]
            arr = np.array(img) / 255.0
            out = sk_gaussian(arr, sigma=c, channel_axis=-1 if arr.ndim == 3 else None)
            return np.clip(out, 0, 1) * 255

    def via_corrupt(fn, severity):
        def run():
            for g in gray:
                rgb = np.stack((g,) * 3, axis=-1)  # what corrupt() does with a grayscale image
                np.uint8(fn(rgb, severity))
        return run

    def bare(fn, severity):
        def run():
            for g in gray:
                fn(g, severity)
        return run

    # (fmbench operation, its function, peer corruption, peer function at the matching severity)
    rows = [
        ("noise SNR 2 (Poisson-Gaussian)", ours_noise, "gaussian_noise sev 3", peer.gaussian_noise, 3),
        ("noise SNR 2 (Poisson-Gaussian)", ours_noise, "shot_noise sev 3", peer.shot_noise, 3),
        ("sib PSF 4x (blur + reference noise)", ours_sib, "gaussian_blur sev 3 (sigma 3)", peer_gaussian_blur, 3),
        ("sib PSF 4x (blur + reference noise)", ours_sib, "defocus_blur sev 3", peer.defocus_blur, 3),
        ("Gaussian blur sigma 3 only", ours_blur_only, "gaussian_blur sev 3 (sigma 3)", peer_gaussian_blur, 3),
    ]
    cache: dict = {}
    print(f"fmbench vs imagecorruptions {getattr(imagecorruptions, '__version__', '')}: {n} nucleus images "
          f"{args.size}x{args.size}, CPU, torch threads {args.threads}, median of {args.repeats}")
    header = (f"{'fmbench':38s} {'img/s':>8s}   {'imagecorruptions':30s} {'corrupt() img/s':>15s} "
              f"{'ratio':>6s} {'bare img/s':>10s} {'ratio':>6s}")
    print(header)
    print("-" * len(header))
    ratios = []
    for ours_name, ours_fn, peer_name, peer_fn, sev in rows:
        if ours_name not in cache:
            cache[ours_name] = n / _timed(ours_fn, args.repeats)
        ours = cache[ours_name]
        p_rgb = n / _timed(via_corrupt(peer_fn, sev), args.repeats)
        p_bare = n / _timed(bare(peer_fn, sev), args.repeats)
        ratios.append((ours / p_rgb, ours / p_bare))
        print(f"{ours_name:38s} {ours:8.1f}   {peer_name:30s} {p_rgb:15.1f} {ours / p_rgb:5.1f}x "
              f"{p_bare:10.1f} {ours / p_bare:5.1f}x")
    for note in notes:
        print(f"note: {note}")
    worst = min(r for pair in ratios for r in pair)
    print(f"lowest ratio {worst:.1f}x (goal: 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
