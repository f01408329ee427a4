"""Hook specifications: the whole plugin interface of fmbench.

Every built-in model, dataset, corruption, attack and protocol registers through these same
hooks; a third-party package does so by naming a module that implements them under
``[project.entry-points.fmbench]`` in its ``pyproject.toml``.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("fmbench")
hookimpl = pluggy.HookimplMarker("fmbench")


@hookspec
def fmbench_models():
    """Register models.

    :return: a list of :class:`fmbench.specs.ModelSpec`.  Each name must be unique across
        all plugins.
    """


@hookspec
def fmbench_datasets():
    """Register datasets.

    :return: a list of :class:`fmbench.specs.DatasetSpec`.
    """


@hookspec
def fmbench_corruptions():
    """Register corruptions.

    :return: a list of :class:`fmbench.specs.CorruptionSpec`.
    """


@hookspec
def fmbench_attacks():
    """Register adversarial attacks.

    :return: a list of :class:`fmbench.specs.AttackSpec`.
    """


@hookspec
def fmbench_label_noises():
    """Register label-noise models (how rough annotations differ from exact masks).

    :return: a list of :class:`fmbench.specs.LabelNoiseSpec`.
    """


@hookspec
def fmbench_protocols():
    """Register evaluation protocols (tiers such as ``quick`` and ``full``, each versioned).

    :return: a list of :class:`fmbench.protocol.Protocol`.  Old versions stay registered
        so results made under them can still be validated.
    """


@hookspec(firstresult=True)
def fmbench_resolve_model(ref, args):
    """Build a model from a reference with a scheme, such as ``mmseg:CONFIG.py``.

    :param ref: the reference as the user gave it (``scheme:rest``).
    :param args: keyword arguments from ``--model-arg``.
    :return: an ``nn.Module`` if this plugin handles the scheme, else ``None`` so the next
        plugin (and finally ``module:Attr`` import) is tried.
    """


@hookspec(firstresult=True)
def fmbench_resolve_dataset(ref, split, image_size):
    """Open a dataset from a reference with a scheme, such as ``folder:PATH``.

    :param ref: the reference as the user gave it (``scheme:rest``).
    :param split: the split asked for (``train``, ``val`` or ``test``).
    :param image_size: the protocol's image size (synthetic datasets generate at it).
    :return: an object following :class:`fmbench.data.Dataset`, or ``None``.
    """
