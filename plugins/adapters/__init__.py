"""Adapters: models from other libraries through the ``fmbench_resolve_model`` hook.

- ``ts:FILE.pt`` — a TorchScript model (``torch.jit.save``), loaded on the CPU.
- ``smp:ARCH/ENCODER`` — a segmentation-models-pytorch model (``smp:Unet/resnet18``,
  ``smp:FPN/tu-convnext_atto``), random encoder weights, one input channel.
- ``timm:MODEL`` — a timm backbone (``features_only``) with a small FPN-style head.
- ``bioimageio:PATH`` — a bioimage.io model package (folder, ``rdf.yaml`` or ``.zip``) with TorchScript
  weights, its declared pre- and postprocessing honoured or refused (``fmbench.bioimageio``).
- ``mmseg:CONFIG.py`` — an mmsegmentation 1.x config file, or one of mmseg's shipped configs
  (``mmseg:segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py``); needs the ``mmseg`` extra.

Each returns an ``nn.Module`` that follows the fmbench model contract; ``--model-arg
classes=N`` sets the number of output channels of the smp, timm and mmseg models (default 1,
read with a sigmoid).  Weights come from ``--checkpoint`` like any other model; an mmseg
model's state dict has mmseg's own key names, so an mmseg checkpoint holding ``state_dict``
and plain ``meta`` loads as it is.  docs/adapters.md describes all four.
"""

from __future__ import annotations

from fmbench import ModelLoadError, hookimpl

from ._common import _no_args
from .mmseg import MMSEG_ARGS, MMSegModel, mmseg_model
from .smp import smp_architectures, smp_model
from .timm import TimmSegmenter, timm_model
from .torchscript import TorchScriptModel, torchscript

__all__ = ["MMSEG_ARGS", "MMSegModel", "SCHEMES", "TimmSegmenter", "TorchScriptModel", "fmbench_resolve_model",
           "mmseg_model", "smp_architectures", "smp_model", "timm_model", "torchscript"]


def _bioimageio(rest, args):
    from .bioimageio import load_package

    return load_package(rest) if not args else _no_args("bioimageio", args)


SCHEMES = {"ts": lambda rest, args: torchscript(rest) if not args else _no_args("ts", args),
           "bioimageio": _bioimageio,
           "smp": smp_model, "timm": timm_model, "mmseg": mmseg_model}


@hookimpl
def fmbench_resolve_model(ref, args):
    scheme, _, rest = ref.partition(":")
    handler = SCHEMES.get(scheme)
    if handler is None:
        return None
    if not rest:
        raise ModelLoadError(f"model reference {ref!r}: nothing after '{scheme}:'")
    return handler(rest, dict(args))
