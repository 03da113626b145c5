r"""Training with PyTorch Lightning: :class:`PriorModule`, :class:`PoseDataModule` and :func:`train`.

This subpackage is the only part of poseprior that imports Lightning, and ``import poseprior``
never imports it. A prior trained here optimizes the same ``prior.training_loss`` as
``prior.fit``; the result is exported with ``prior.save`` (``config.json`` + ``model.safetensors``)
and every run is recorded in ``checkpoints/<run>/run.json``. See ``docs/training.md``.

Example:
    >>> import poseprior
    >>> from poseprior.data import sample_path
    >>> from poseprior.training import PoseDataModule, train
    >>> prior = poseprior.create("gaussian")                                  # doctest: +SKIP
    >>> result = train(prior, PoseDataModule(sample_path(), prior.layout), max_epochs=2)  # doctest: +SKIP
    >>> poseprior.load(result.final)                                         # doctest: +SKIP
"""

from __future__ import annotations

try:
    import pytorch_lightning  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "poseprior.training needs PyTorch Lightning, which is not installed: pip install pytorch-lightning"
    ) from e

from .checkpoints import checkpoint_config, export_checkpoint, load_source, prior_from_checkpoint
from .data import PoseDataModule, PoseTensorDataset
from .driver import RESUME_OPTIONS, StopAfterEpochs, TrainOptions, TrainResult, build_trainer, train
from .module import PriorModule
from .runs import RUN_RECORD, read_run_record

__all__ = [
    "RESUME_OPTIONS",
    "RUN_RECORD",
    "PoseDataModule",
    "PoseTensorDataset",
    "PriorModule",
    "StopAfterEpochs",
    "TrainOptions",
    "TrainResult",
    "build_trainer",
    "checkpoint_config",
    "export_checkpoint",
    "load_source",
    "prior_from_checkpoint",
    "read_run_record",
    "train",
]
