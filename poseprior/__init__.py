"""poseprior: a model zoo of human pose priors over SMPL-family poses, with one interface."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.2.0"

from .base import PosePrior  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError,
    DataError,
    FitDivergedError,
    NotInitializedError,
    PosePriorError,
    ShapeError,
    UnknownPriorError,
    ValueCheckError,
)
from .formats.layouts import JointLayout, get_layout, list_layouts  # noqa: E402
from .registry import create, list_priors, prior_class, register_prior  # noqa: E402


def load(
    directory: str | Path, *, map_location: str = "cpu", max_parameters: int | None = 50_000_000
) -> PosePrior:
    """Loads any prior saved with ``prior.save(directory)``; the config names its class.

    ``max_parameters`` caps the tensor values an untrusted checkpoint may create (None: no cap).
    """
    from .hub import load_checkpoint

    return load_checkpoint(directory, map_location=map_location, max_parameters=max_parameters)


def load_pretrained(name: str, *, map_location: str = "cpu") -> PosePrior:
    """Loads a pretrained checkpoint shipped with poseprior, e.g. ``"global_flow.cmu"``."""
    from .hub import load_pretrained as _load

    return _load(name, map_location=map_location)


def list_pretrained(pattern: str = "*") -> list[str]:
    """The names of the shipped pretrained checkpoints (``arch.tag``) matching ``pattern``."""
    from .hub import list_pretrained as _list

    return _list(pattern)


__all__ = [
    "CheckpointError",
    "DataError",
    "FitDivergedError",
    "JointLayout",
    "NotInitializedError",
    "PosePrior",
    "PosePriorError",
    "ShapeError",
    "UnknownPriorError",
    "ValueCheckError",
    "__version__",
    "create",
    "get_layout",
    "list_layouts",
    "list_pretrained",
    "load_pretrained",
    "list_priors",
    "load",
    "prior_class",
    "register_prior",
]
