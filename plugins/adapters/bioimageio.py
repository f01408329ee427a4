"""``bioimageio:PATH``: a bioimage.io model package under fmbench's model contract.

A package folder, its ``rdf.yaml`` or a ``.zip``, read with ``bioimageio.spec``; its TorchScript
weights run on fmbench's own input (percentile-normalised to [0, 1]), the package's declared
preprocessing applied on top: ``scale_range`` and ``zero_mean_unit_variance`` are honoured (a
gain and offset do not change them), ``scale_linear`` and ``clip`` only after one of those,
``ensure_dtype`` trivially; any other step, or a fixed gain meant for raw intensities, is
refused with its reason.  The raw output is read as logits when a ``sigmoid``/``softmax``
postprocessing follows it, as probabilities when its data range is declared [0, 1]; otherwise
the package is refused (a threshold in the wrong place would score the wrong masks).  The
package's id, name, description sha256 and weights sha256 go into the result and the run's
identity (``fmbench_source``).  docs/adapters.md.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmbench import ModelLoadError

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
    path = Path(ref).expanduser()
    if path.suffix.lower() == ".zip" and path.is_file():
        import tempfile
        import zipfile

        # the package's own files, never what lies beside the zip: unpacked (zipfile drops absolute
        # and `..` parts) and read from there; the TorchScript is in memory once loaded
        with tempfile.TemporaryDirectory(prefix="fmbench-bioimageio-") as tmp:
            try:
                with zipfile.ZipFile(path) as z:
                    z.extractall(tmp)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ModelLoadError(f"bioimageio:{ref}: not a readable zip ({exc})") from None
            module = _load(ref, _description(Path(tmp), ref))
            module.fmbench_source["package_sha256"] = _sha(path)
            return module
    return _load(ref, _description(path, ref) if path.is_dir() else path)


def _description(folder: Path, ref: str) -> Path:
    """A package folder's description file: ``rdf.yaml``, ``bioimageio.yaml``, ``model.yaml`` or
    ``*.<one of those>`` (the spec's names, in its order of preference)."""
    try:
        from bioimageio.spec._internal.io import identify_bioimageio_yaml_file_name

        return folder / identify_bioimageio_yaml_file_name([p.name for p in folder.iterdir() if p.is_file()])
    except ImportError:
        return folder / "rdf.yaml"
    except ValueError:
        raise ModelLoadError(f"bioimageio:{ref}: no rdf.yaml, bioimageio.yaml or model.yaml in the package") from None


def _load(ref: str, path: Path) -> Any:
    try:
        from bioimageio.spec import load_model_description
    except ImportError:
        raise ModelLoadError("bioimageio: packages need the bioimageio extra: pip install 'fmbench[bioimageio]'") from None
    if not path.exists():
        raise ModelLoadError(f"bioimageio:{ref}: {path.name if 'fmbench-bioimageio-' in str(path) else path} "
                             f"does not exist")
    try:
        descr: Any = load_model_description(str(path), perform_io_checks=True)  # v0.4 or v0.5: read duck-typed
    except Exception as exc:  # noqa: BLE001 - the spec library raises many kinds; one line says which
        said = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise ModelLoadError(f"bioimageio:{ref}: not a valid bioimage.io model description "
                             f"({type(exc).__name__}: {said[:300]}{' ...' if len(said) > 300 else ''})") from None
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


