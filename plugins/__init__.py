"""fmbench's built-in plugins (installed as ``fmbench_plugins``).

Each module here implements fmbench hooks exactly as a third-party plugin would; the host
registers the modules listed in ``BUILTINS``.
"""

BUILTINS = (
    "fmbench_plugins.protocols",
    "fmbench_plugins.unet",
    "fmbench_plugins.zoo",
    "fmbench_plugins.adapters",
    "fmbench_plugins.synth_nucleus",
    "fmbench_plugins.synth_er",
    "fmbench_plugins.synth_mito",
    "fmbench_plugins.folder",
    "fmbench_plugins.noise",
    "fmbench_plugins.blur",
    "fmbench_plugins.artefacts",
    "fmbench_plugins.fgsm",
    "fmbench_plugins.pgd",
    "fmbench_plugins.apgd",
    "fmbench_plugins.ensemble",
    "fmbench_plugins.universal",
    "fmbench_plugins.random_noise",
    "fmbench_plugins.label_noise",
)
