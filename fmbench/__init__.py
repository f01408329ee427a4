"""fmbench: a robustness benchmark for segmentation of fluorescence-microscopy images.

The front door is :func:`evaluate`::

    import fmbench
    result = fmbench.evaluate(my_module, "nucleus")      # or a reference such as "unet-small"
    print(result.summary["clean_iou"], result.summary["adversarial_robustness"])

Plugin authors import everything they need from here, too: the hook marker and spec records,
the :class:`Attack` and :class:`Corruption` base classes with their helpers (input gradients,
projections, random starts, the detector), the :class:`Sample` record and the errors.
"""

__version__ = "0.1.0"

from .api import evaluate, get_protocol, list_plugins, load_model, open_dataset  # noqa: E402
from .attack import (  # noqa: E402
    Attack,
    ascend,
    check_norm,
    input_gradient,
    project,
    project_l2,
    project_linf,
    random_noise,
    random_start,
    segmentation_loss,
    two_class_logits,
)
from .conditions import Condition, expose, plan, reference_input  # noqa: E402
from .corruption import (  # noqa: E402
    Corruption,
    PhysicalCorruption,
    Sensor,
    check_image_batch,
    check_level,
    gaussian_blur,
    signal_levels,
    signal_mask,
)
from .data import Dataset, Sample, normalize  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError,
    DataError,
    FmbenchError,
    ModelContractError,
    ModelLoadError,
    PluginError,
    ProtocolError,
    ResultError,
    UnknownNameError,
)
from .hookspecs import hookimpl  # noqa: E402
from .metrics import per_image_iou, predict  # noqa: E402
from .model import LoadedModel  # noqa: E402
from .protocol import AttackEntry, Camera, CorruptionEntry, Protocol  # noqa: E402
from .result import Result  # noqa: E402
from .seeding import (  # noqa: E402
    derive_seed,
    generators,
    poisson_per_image,
    rand_per_image,
    randn_per_image,
)
from .label_noise import LabelNoise  # noqa: E402
from .specs import AttackSpec, CorruptionSpec, DatasetSpec, LabelNoiseSpec, ModelSpec, Weights  # noqa: E402

__all__ = [
    "__version__",
    # the front door
    "evaluate", "load_model", "open_dataset", "get_protocol", "list_plugins", "Result", "LoadedModel",
    # plugin registration
    "hookimpl", "ModelSpec", "DatasetSpec", "CorruptionSpec", "AttackSpec", "Weights", "LabelNoiseSpec", "LabelNoise",
    "Protocol", "CorruptionEntry", "AttackEntry", "Camera",
    # data and conditions
    "Sample", "Dataset", "normalize", "Condition", "plan", "expose", "reference_input",
    # corruption kit
    "Corruption", "PhysicalCorruption", "Sensor", "gaussian_blur", "signal_levels", "signal_mask",
    "check_image_batch", "check_level",
    # attack kit
    "Attack", "input_gradient", "segmentation_loss", "two_class_logits", "project", "project_linf", "project_l2",
    "ascend", "random_start", "random_noise", "check_norm", "predict", "per_image_iou",
    # per-image randomness
    "derive_seed", "generators", "rand_per_image", "randn_per_image", "poisson_per_image",
    # errors
    "FmbenchError", "PluginError", "UnknownNameError", "ModelLoadError", "ModelContractError", "CheckpointError",
    "DataError", "ProtocolError", "ResultError",
]
