"""bioimage.io model packages, both ways.

**Export** (:func:`export_package`): a registered model with its registered weights becomes a
bioimage.io model package (format 0.5): TorchScript weights traced at the protocol's image
size, the preprocessing fmbench itself applies (per-image percentile scaling 1-99.8 %, then
clipping to [0, 1]) declared as ``scale_range`` + ``clip``, a ``sigmoid`` postprocessing, a
test input (one test image at the reference condition) with the output the package must
reproduce, and, under ``config.fmbench``, the model's leaderboard scores with their intervals,
protocol and weights hash.  The description is written as JSON, which is YAML.

**Import** (``bioimageio:PATH``, :func:`load_package`, through the model hook): a package
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
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ModelLoadError, ResultError

SUPPORTED_PRE = ("scale_range", "zero_mean_unit_variance", "scale_linear", "clip", "ensure_dtype")
# normalisations that give the same on fmbench's normalised input as on the raw image (up to the
# clipping of the darkest 1 % and brightest 0.2 % of pixels): they are unchanged by a gain and offset
AFFINE_FREE = ("scale_range", "zero_mean_unit_variance")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Preprocessed(nn.Module):
    """A package's TorchScript network behind its declared preprocessing; logits out."""

    def __init__(self, net: nn.Module, steps: list[tuple[str, dict[str, Any]]], output: str, channel: int | None,
                 source: dict[str, Any]):
        super().__init__()
        self.net = net
        self.steps = steps
        self.output = output  # "logits" | "probabilities"
        self.channel = channel
        self.fmbench_source = source  # recorded in results and in the run's identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, kw in self.steps:
            x = _apply(name, kw, x)
        out = self.net(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if self.output == "probabilities":
            p = out.clamp(1e-6, 1 - 1e-6)
            out = torch.log(p) - torch.log1p(-p)
            if out.shape[1] > 1:  # per-class probabilities: the foreground channel's logit
                out = out[:, 1:2]
        return out


def _apply(name: str, kw: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    dims = (2, 3)  # per image and channel, over the spatial axes (the packages fmbench reads)
    if name == "scale_range":
        lo = torch.quantile(x.flatten(2), float(kw.get("min_percentile", 0.0)) / 100, dim=2)[..., None, None]
        hi = torch.quantile(x.flatten(2), float(kw.get("max_percentile", 100.0)) / 100, dim=2)[..., None, None]
        return (x - lo) / (hi - lo + float(kw.get("eps", 1e-6)))
    if name == "zero_mean_unit_variance":
        mean = x.mean(dims, keepdim=True)
        std = x.std(dims, keepdim=True)
        return (x - mean) / (std + float(kw.get("eps", 1e-6)))
    if name == "scale_linear":
        return x * float(kw.get("gain", 1.0)) + float(kw.get("offset", 0.0))
    if name == "clip":
        return x.clamp(float(kw.get("min", -math.inf)), float(kw.get("max", math.inf)))
    return x  # ensure_dtype: fmbench's inputs are float32 already


def load_package(ref: str) -> nn.Module:
    """``bioimageio:PATH``: the package's model under fmbench's contract (module docstring)."""
    try:
        from bioimageio.spec import load_model_description
    except ImportError:
        raise ModelLoadError("bioimageio: packages need the bioimageio extra: pip install 'fmbench[bioimageio]'") from None
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "rdf.yaml"
    if not path.exists():
        raise ModelLoadError(f"bioimageio:{ref}: {path} does not exist")
    try:
        descr: Any = load_model_description(str(path), perform_io_checks=True)  # v0.4 or v0.5: read duck-typed
    except Exception as exc:  # noqa: BLE001 - the spec library raises many kinds; one line says which
        raise ModelLoadError(f"bioimageio:{ref}: not a valid bioimage.io model description "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if getattr(descr, "type", None) != "model" or not hasattr(descr, "inputs"):
        raise ModelLoadError(f"bioimageio:{ref}: not a valid bioimage.io model description "
                             f"({getattr(descr, 'validation_summary', None) and 'see bioimageio validate'})")
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ModelLoadError(f"bioimageio:{ref}: {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; "
                             f"fmbench evaluates one image in, one segmentation out")
    inp, out = descr.inputs[0], descr.outputs[0]
    kinds = [a.type for a in inp.axes]
    if kinds not in (["batch", "channel", "space", "space"],):
        raise ModelLoadError(f"bioimageio:{ref}: input axes {kinds}; fmbench needs batch, channel, y, x")
    chans = len(getattr(inp.axes[1], "channel_names", []) or [])
    if chans != 1:
        raise ModelLoadError(f"bioimageio:{ref}: the input has {chans} channels; fmbench's images have one")
    steps: list[tuple[str, dict[str, Any]]] = []
    for p in inp.preprocessing:
        if p.id not in SUPPORTED_PRE:
            raise ModelLoadError(f"bioimageio:{ref}: preprocessing {p.id!r} is not supported (fmbench honours "
                                 f"{', '.join(SUPPORTED_PRE)})")
        kw = p.kwargs.model_dump() if getattr(p, "kwargs", None) is not None else {}
        if p.id in ("scale_linear", "clip") and not any(n in AFFINE_FREE for n, _ in steps):
            # fmbench's input is already percentile-normalised (attack budgets live there): a fixed
            # gain or clip meant for raw intensities would act on the wrong units
            raise ModelLoadError(f"bioimageio:{ref}: preprocessing {p.id!r} on raw intensities cannot be honoured "
                                 f"(fmbench gives the model percentile-normalised images in [0, 1]); only after a "
                                 f"{' or '.join(AFFINE_FREE)} step")
        steps.append((p.id, {k: v for k, v in kw.items() if isinstance(v, (int, float))}))
    post = [p.id for p in out.postprocessing]
    data = getattr(out, "data", None)
    rng = getattr(data, "range", None) if data is not None and not isinstance(data, (list, tuple)) else None
    if any(p in ("sigmoid", "softmax") for p in post):
        output = "logits"
    elif rng is not None and tuple(rng) == (0, 1):
        output = "probabilities"
    else:
        raise ModelLoadError(f"bioimageio:{ref}: the output is neither followed by a sigmoid/softmax "
                             f"postprocessing nor declared in [0, 1]; fmbench cannot tell logits from "
                             f"probabilities, and a threshold at the wrong place would score the wrong masks")
    ts = descr.weights.torchscript
    if ts is None:
        have = [k for k in ("pytorch_state_dict", "onnx", "keras_hdf5", "tensorflow_saved_model_bundle")
                if getattr(descr.weights, k, None) is not None]
        raise ModelLoadError(f"bioimageio:{ref}: no TorchScript weights (it has: {', '.join(have) or 'none'}); "
                             f"fmbench runs TorchScript packages without importing their code")
    weights = path.parent / str(ts.source.path if hasattr(ts.source, "path") else ts.source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.x deprecates TorchScript, still loads it
        net = torch.jit.load(str(weights), map_location="cpu")
    source = {"kind": "bioimageio", "id": str(getattr(descr, "id", "") or ""), "name": descr.name,
              "rdf_sha256": _sha(path), "weights_sha256": _sha(weights), "preprocessing": [s for s, _ in steps],
              "postprocessing": post, "output": output}
    return Preprocessed(net, steps, output, None, source)


def export_package(model: str, dataset: str, out: str | Path, *, tier: str = "quick", entry: dict | None = None,
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
