"""fmbench: a robustness benchmark for segmentation of fluorescence-microscopy images.

Plugins import what they need from here: the hook marker, the spec records, the protocol
records and the error classes.
"""

__version__ = "0.1.0"

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
from .protocol import AttackEntry, Camera, CorruptionEntry, Protocol  # noqa: E402
from .specs import AttackSpec, CorruptionSpec, DatasetSpec, ModelSpec, Weights  # noqa: E402

__all__ = [
    "__version__", "hookimpl", "ModelSpec", "DatasetSpec", "CorruptionSpec", "AttackSpec", "Weights",
    "Protocol", "CorruptionEntry", "AttackEntry", "Camera", "FmbenchError", "PluginError",
    "UnknownNameError", "ModelLoadError", "ModelContractError", "CheckpointError", "DataError",
    "ProtocolError", "ResultError",
]
