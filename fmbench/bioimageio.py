"""bioimage.io model packages: writing one (the reader is the ``bioimageio:`` model scheme,
``fmbench_plugins/adapters/bioimageio.py``).

**Export** (:func:`export_package`): a registered model with its registered weights becomes a
bioimage.io model package (format 0.5): TorchScript weights traced at the protocol's image
size, the preprocessing fmbench itself applies (per-image percentile scaling 1-99.8 %, then
clipping to [0, 1]) declared as ``scale_range`` + ``clip``, a ``sigmoid`` postprocessing, a
test input (one test image at the reference condition) with the output the package must
reproduce, and, under ``config.fmbench``, the model's leaderboard scores with their intervals,
protocol and weights hash.  The description is written as JSON, which is YAML.

**Import** (``bioimageio:PATH``, the model scheme of ``fmbench_plugins/adapters/bioimageio.py``): a package
folder, its ``rdf.yaml`` or a ``.zip``, read with ``bioimageio.spec``; its TorchScript weights
run under fmbench's model contract.  fmbench gives the model its own normalised input (``[0,
1]``); the package's declared preprocessing is then applied on top of it (``scale_range``,
``zero_mean_unit_variance``: honoured, as they are unchanged by fmbench's own percentile
scaling; ``scale_linear`` and ``clip`` after one of those; ``ensure_dtype``), any other step
(or a fixed gain meant for raw intensities) is refused with its reason.  The raw output is read as logits when the package declares a
``sigmoid``/``softmax`` postprocessing (then the weights output logits) and as probabilities when
the output's declared data range is [0, 1] (turned into logits); otherwise the package is
refused: a threshold at the wrong place would score the wrong masks.  The package's id, name,
description sha256 and weights sha256 go into the result (``model.source``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ResultError
from .protocol import DEFAULT_TIER


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_package(model: str, dataset: str, out: str | Path, *, tier: str = DEFAULT_TIER, entry: dict | None = None,
                   overwrite: bool = False) -> Path:
    """Write ``model``'s registered weights for ``dataset`` as a bioimage.io package folder
    ``out`` (rdf.yaml, weights.pt, test tensors); returns the rdf path (module docstring)."""
    import fmbench

    from .conditions import expose
    from .data import normalize
    from .seeding import generators

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ResultError(f"{out} exists and is not empty", hints=("overwrite",))
    protocol = fmbench.get_protocol(tier)
    ref = protocol.dataset_ref(dataset)
    loaded = fmbench.load_model(model, dataset=ref, generation=protocol.version)
    ds = fmbench.open_dataset(ref, "test", protocol.image_size)
    s = ds[0]
    x = torch.from_numpy(np.asarray(s.image, np.float32))[None, None]
    m = torch.from_numpy(np.asarray(s.mask, bool))[None]
    # the package's test input: one test image as the detector records it (reference condition)
    raw = expose(protocol, x, m, generators(protocol.seed, [f"{ref}/{s.id}"], "reference"))
    net = loaded.module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation; the traced size is the declared one
        traced = torch.jit.trace(net, normalize(raw, *protocol.normalization))
        expected = torch.sigmoid(traced(normalize(raw, *protocol.normalization)))
        out.mkdir(parents=True, exist_ok=True)
        torch.jit.save(traced, str(out / "weights.pt"))
    np.save(out / "test_input.npy", raw.numpy().astype(np.float32))
    np.save(out / "test_output.npy", expected.numpy().astype(np.float32))
    size = protocol.image_size
    lo, hi = protocol.normalization
    scores = None
    if entry is not None:
        scores = {k: entry["scores"].get(k) for k in ("clean_iou", "corrupted_iou", "robust_iou",
                                                       "adversarial_robustness", "corruption_robustness")}
    rdf: dict[str, Any] = {
        "type": "model", "format_version": "0.5.4",
        "name": f"fmbench {model} ({ref})",
        "description": (f"{model} trained by fmbench on the synthetic fluorescence-microscopy dataset {ref} "
                        f"(foreground segmentation, one channel); exported with its fmbench robustness scores"),
        "authors": [{"name": "fmbench"}], "cite": [{"text": "Zhong, Li & Yang, BMC Bioinformatics 2024",
                                                    "doi": "10.1186/s12859-024-05894-4"}],
        "license": "MIT", "tags": ["fluorescence-microscopy", "segmentation", "fmbench"],
        "documentation": "README.md",
        "inputs": [{"id": "raw", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["fluorescence"]},
                                          {"type": "space", "id": "y", "size": size},
                                          {"type": "space", "id": "x", "size": size}],
                    "test_tensor": {"source": "test_input.npy", "sha256": _sha(out / "test_input.npy")},
                    "preprocessing": [{"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": lo,
                                                                        "max_percentile": hi}},
                                      {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}}]}],
        "outputs": [{"id": "foreground", "axes": [{"type": "batch"},
                                                  {"type": "channel", "channel_names": ["foreground"]},
                                                  {"type": "space", "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"}},
                                                  {"type": "space", "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"}}],
                     "test_tensor": {"source": "test_output.npy", "sha256": _sha(out / "test_output.npy")},
                     "postprocessing": [{"id": "sigmoid"}]}],
        "weights": {"torchscript": {"source": "weights.pt", "sha256": _sha(out / "weights.pt"),
                                    "pytorch_version": torch.__version__.split("+")[0]}},
        "config": {"fmbench": {"model": model, "dataset": ref, "protocol": entry["protocol"]["id"] if entry else None,
                               "protocol_hash": entry["protocol"]["hash"] if entry else None,
                               "weights": loaded.weights_name, "checkpoint_sha256": loaded.weights_sha256,
                               "scores": scores, "fmbench_version": fmbench.__version__}},
    }
    (out / "README.md").write_text(
        f"# {rdf['name']}\n\n{rdf['description']}.\n\n# Validation\n\nfmbench protocol "
        f"{rdf['config']['fmbench']['protocol']} on {ref}: scores with their 95 % bootstrap intervals over the test "
        f"images (clean, corrupted and robust IoU; the study's relative robustness):\n\n"
        f"```json\n{json.dumps(scores, indent=1)}\n```\n")
    rdf_path = out / "rdf.yaml"
    rdf_path.write_text(json.dumps(rdf, indent=1))  # JSON is YAML
    return rdf_path
