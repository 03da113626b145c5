r"""``PoseDataModule``: a Lightning DataModule over a folder of AMASS-format npz files and its splits.

The folder holds ``.npz`` motion files and a ``splits.json`` naming the files of each split
(``{"train": [...], "val": [...]}``, see :func:`poseprior.amass.load_splits`): splits are by *file*,
so no clip contributes frames to both training and validation. Poses are loaded once, in memory,
and the joints of the prior's layout are selected by name with
:meth:`poseprior.amass.PoseData.poses_for`. Nothing is ever downloaded.

**Shuffling** uses a :class:`torch.utils.data.DistributedSampler` even on one process: it draws
each epoch's permutation from a ``torch.Generator`` seeded with ``shuffle_seed + epoch`` (Lightning calls
``set_epoch``), so the order depends on the seed and the epoch only. That is what makes a resumed
run see the same batches as an uninterrupted one, and with several processes every rank takes its
own shard of the same permutation. The global RNG is never used.

**Validation** runs on two loaders: the validation split (index 0) and a fixed, evenly spaced
subset of at most ``train_eval_size`` training poses (index 1), so that the train/val NLL gap is
measured on clean poses in eval mode. With several processes each rank scores a disjoint shard
(no padding, no duplicates); :class:`~poseprior.training.PriorModule` sums the shards.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..amass import PoseData, load_split
from ..errors import DataError
from ..formats.adapters import mirror_pose, symmetric
from ..formats.layouts import JointLayout, get_layout

__all__ = ["PoseDataModule", "PoseTensorDataset"]


class PoseTensorDataset(Dataset):
    r"""Poses held in one tensor with shape :math:`(N, J, 3)`; a batch is one indexing operation.

    ``__getitems__`` (used by the DataLoader when present) gathers a whole batch at once instead
    of stacking :math:`B` single poses, which matters for tiny models where the loader dominates.
    """

    def __init__(self, poses: Tensor) -> None:
        self.poses = poses

    def __len__(self) -> int:
        return int(self.poses.shape[0])

    def __getitem__(self, index: int) -> Tensor:
        return self.poses[index]

    def __getitems__(self, indices: Sequence[int]) -> Tensor:
        return self.poses[torch.as_tensor(indices, dtype=torch.long)]


def _relative(path: str | Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when it lies inside it, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def _collate(batch: Tensor | list[Tensor]) -> Tensor:
    """The batch is already a tensor (from ``__getitems__``); stack single poses otherwise."""
    return batch if isinstance(batch, Tensor) else torch.stack(batch)


class _ShardSampler(DistributedSampler):
    """Rank ``r`` of ``w`` takes indices ``r, r + w, ...`` in order: no shuffling, padding or duplicates.

    A :class:`DistributedSampler` subclass so that Lightning leaves it in place.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class PoseDataModule(pl.LightningDataModule):
    r"""Training and validation poses from a folder of AMASS-format npz files with a ``splits.json``.

    Arguments:
        folder: The data folder (``*.npz`` files and ``splits.json``).
        layout: The prior's joint layout (``prior.layout``); joints are selected by name.
        batch_size: Training batch size *per process*.
        eval_batch_size: Batch size for validation.
        shuffle_seed: Seed of the shuffling (the permutation of epoch ``e`` uses ``shuffle_seed + e``).
        train_split: Name of the training split in ``splits.json``.
        val_split: Name of the validation split.
        splits_file: Another splits file than ``folder/splits.json``.
        fps: Subsample every file to this frame rate (see :func:`poseprior.amass.load_npz`).
        train_eval_size: Size of the fixed training subset scored at every validation (0: none).
        dtype: The dtype of the poses served (the prior's dtype).
        num_workers: DataLoader worker processes for the training batches (0: the main process;
            the poses are one in-memory tensor, so workers help only with slow custom datasets).
        mirror: Train on the mirror images of the training poses too, as
            :meth:`poseprior.PosePrior.fit` does (``None``: when the layout is left/right
            symmetric). Validation poses are never mirrored.

    Example:
        >>> from poseprior.data import sample_path
        >>> dm = PoseDataModule(sample_path(), "body", batch_size=512)
        >>> dm.setup("fit")
        >>> dm.train_poses.shape
        torch.Size([14549, 21, 3])
    """

    def __init__(
        self,
        folder: str | Path,
        layout: str | JointLayout = "body",
        *,
        batch_size: int = 256,
        eval_batch_size: int = 4096,
        shuffle_seed: int = 0,
        train_split: str = "train",
        val_split: str = "val",
        splits_file: str | Path | None = None,
        fps: float | None = None,
        train_eval_size: int = 4096,
        dtype: torch.dtype = torch.float32,
        num_workers: int = 0,
        mirror: bool | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {batch_size} and {eval_batch_size}")
        if train_eval_size < 0:
            raise ValueError(f"train_eval_size must be >= 0, got {train_eval_size}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.folder = Path(folder)
        self.layout = get_layout(layout)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.shuffle_seed = int(shuffle_seed)
        self.train_split = train_split
        self.val_split = val_split
        self.splits_file = None if splits_file is None else Path(splits_file)
        self.fps = fps
        self.train_eval_size = int(train_eval_size)
        self.dtype = dtype
        self.num_workers = num_workers
        if mirror is not None and not isinstance(mirror, bool):
            raise ValueError(f"mirror must be True, False or None, got {mirror!r}")
        self.mirror = symmetric(self.layout) if mirror is None else mirror
        # Plain values only: Lightning stores these in its checkpoints, which --resume reads back
        # with weights_only=True (no arbitrary objects).
        self.save_hyperparameters(
            {
                "folder": str(self.folder),
                "layout": self.layout.name,
                "batch_size": self.batch_size,
                "eval_batch_size": self.eval_batch_size,
                "shuffle_seed": self.shuffle_seed,
                "train_split": train_split,
                "val_split": val_split,
                "fps": fps,
                "train_eval_size": self.train_eval_size,
                "mirror": self.mirror,
            }
        )
        self.train_data: PoseData | None = None
        self.val_data: PoseData | None = None
        self.train_poses: Tensor | None = None
        self.val_poses: Tensor | None = None

    # ------------------------------------------------------------------ loading
    def _load(self, split: str) -> tuple[PoseData, Tensor]:
        data = load_split(self.folder, split, splits_file=self.splits_file, fps=self.fps)
        poses = data.poses_for(self.layout).to(self.dtype)
        if poses.shape[0] < 2:
            raise DataError(
                f"PoseDataModule: split {split!r} of {self.folder} holds {poses.shape[0]} pose(s); "
                "training and validation need at least 2"
            )
        return data, poses

    def setup(self, stage: str | None = None) -> None:
        """Loads the splits (once; later calls reuse them)."""
        if self.train_poses is None:
            self.train_data, self.train_poses = self._load(self.train_split)
            self.val_data, self.val_poses = self._load(self.val_split)

    def _loaded(self) -> tuple[Tensor, Tensor]:
        if self.train_poses is None or self.val_poses is None:
            self.setup("fit")
        assert self.train_poses is not None and self.val_poses is not None  # for type checkers
        return self.train_poses, self.val_poses

    @property
    def train_eval_poses(self) -> Tensor:
        r"""The fixed training subset scored at every validation, with shape :math:`(M, J, 3)`."""
        train, _ = self._loaded()
        n = train.shape[0]
        m = min(self.train_eval_size, n)
        idx = torch.linspace(0, n - 1, m).round().long() if m else torch.zeros(0, dtype=torch.long)
        return train[idx]

    def describe(self) -> str:
        """One line per split: frames and files."""
        self._loaded()
        assert self.train_data is not None and self.val_data is not None
        return (
            f"train ({self.train_split}): {len(self.train_data)} poses "
            f"from {self.train_data.num_files} files; "
            f"val ({self.val_split}): {len(self.val_data)} poses from {self.val_data.num_files} files; "
            f"layout {self.layout.name!r} ({len(self.layout)} joints)"
        )

    def record(self) -> dict[str, Any]:
        """What a run record says about the data: the folder, splits, files and a hash of the poses.

        ``poses_sha256`` hashes the served training and validation poses (values, shapes and dtype),
        so a record tells whether two runs saw the same data without re-reading the files.
        """
        self._loaded()
        assert self.train_data is not None and self.val_data is not None
        folder = self.folder.resolve()
        return {
            "folder": str(folder),
            "splits_file": None if self.splits_file is None else str(self.splits_file.resolve()),
            "train_split": self.train_split,
            "val_split": self.val_split,
            "fps": self.fps,
            "layout": self.layout.name,
            "files": {
                self.train_split: [_relative(f, folder) for f in self.train_data.files],
                self.val_split: [_relative(f, folder) for f in self.val_data.files],
            },
            "poses": {"train": len(self.train_data), "val": len(self.val_data)},
            "poses_sha256": self.poses_sha256(),
        }

    def poses_sha256(self) -> str:
        """SHA-256 of the training and validation poses served (shapes, dtype and values)."""
        digest = hashlib.sha256()
        for poses in self._loaded():
            t = poses.detach().cpu().contiguous()
            digest.update(f"{tuple(t.shape)}:{t.dtype};".encode())
            digest.update(t.numpy().tobytes())
        return digest.hexdigest()

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Optimizer steps per epoch on each of ``world_size`` processes."""
        train, _ = self._loaded()
        return max(1, math.ceil(math.ceil(train.shape[0] / world_size) / self.batch_size))

    # ------------------------------------------------------------------ loaders
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _generator(self) -> torch.Generator:
        # The sampler shuffles with its own generator; a DataLoader without one would still draw its
        # workers' base seed from the global RNG at every epoch.
        return torch.Generator().manual_seed(self.shuffle_seed)

    @property
    def fit_poses(self) -> Tensor:
        r"""The poses training iterates over, :math:`(N', J, 3)`: the training poses and, with ``mirror``,
        their mirror images (as :meth:`poseprior.PosePrior.fit` does)."""
        train, _ = self._loaded()
        return torch.cat([train, mirror_pose(train, self.layout)]) if self.mirror else train

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        dataset = PoseTensorDataset(self.fit_poses)
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.shuffle_seed
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=_collate,
            generator=self._generator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self, poses: Tensor) -> DataLoader:
        world, rank = self._world()
        dataset = PoseTensorDataset(poses)
        sampler = _ShardSampler(dataset, world, rank)
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            sampler=sampler,
            collate_fn=_collate,
            generator=self._generator(),
        )

    def val_dataloader(self) -> list[DataLoader]:
        _, val = self._loaded()
        loaders = [self._eval_loader(val)]
        if self.train_eval_size > 0:
            loaders.append(self._eval_loader(self.train_eval_poses))
        return loaders

    def state_dict(self) -> dict[str, Any]:
        """Nothing to save: the order of every epoch follows from ``seed`` and the epoch."""
        return {}
