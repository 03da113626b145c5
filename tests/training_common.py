"""Small data folders and tiny priors shared by the training tests (not a test module)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

import poseprior
from poseprior.data import sample_path

TRAIN_FILES = [
    "cmu_expmap_test_basketball_basketball_1.npz",
    "cmu_expmap_test_soccer_soccer_1.npz",
    "cmu_expmap_test_running_running_1.npz",
]
VAL_FILES = ["cmu_expmap_test_walking_extra_walking_12.npz"]
# Coupling layers invert in one pass: sampling and the round trip stay cheap in tests.
TINY_FLOW = {"blocks": 1, "hidden_features": 8, "residual_blocks": 1, "transform": "coupling"}
FILTERS = (
    "ignore:.*does not have many workers.*",
    "ignore:.*exists and is not empty.*",
    "ignore:.*LeafSpec.*",
)


def data_folder(root: Path) -> Path:
    """335 training poses (3 files) and 100 validation poses (1 file) of the bundled CMU sample."""
    root.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES + VAL_FILES:
        shutil.copy(sample_path() / name, root / name)
    (root / "splits.json").write_text(json.dumps({"train": TRAIN_FILES, "val": VAL_FILES}))
    return root


def datamodule(folder: Path, **kwargs: Any) -> Any:
    from poseprior.training import PoseDataModule

    return PoseDataModule(folder, "body", **{"batch_size": 64, "train_eval_size": 64, **kwargs})


def ready(name: str, dm: Any, seed: int = 0, **kwargs: Any) -> poseprior.PosePrior:
    """A prior built and initialized from the training split, its weights from a seeded fork of the RNG."""
    dm.setup("fit")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        prior = poseprior.create(name, layout=dm.layout, **kwargs)
        prior.initialize(dm.train_poses)
    return prior


def flow(dm: Any, seed: int = 0, **kwargs: Any) -> poseprior.PosePrior:
    return ready("global_flow", dm, seed, **{**TINY_FLOW, **kwargs})


def quick(**kwargs: Any) -> dict[str, Any]:
    return {"accelerator": "cpu", "num_eval_samples": 16, **kwargs}


def flow_args() -> list[str]:
    """``--prior-args`` of the tiny flow, for the command line."""
    return ["--prior-args", *(f"{k}={v}" for k, v in TINY_FLOW.items())]


def same_weights(a: poseprior.PosePrior, b: poseprior.PosePrior) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
