"""Lightning ``.ckpt`` files and checkpoint folders share one record, one validation and one atomic save."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("pytorch_lightning")

import poseprior  # noqa: E402
from poseprior import CheckpointError  # noqa: E402
from poseprior.hub import checkpoint_record  # noqa: E402
from poseprior.training import PriorModule, export_checkpoint, prior_from_checkpoint  # noqa: E402


def _prior() -> poseprior.PosePrior:
    x = 0.3 * torch.randn(200, 15, 3, generator=torch.Generator().manual_seed(0))
    return poseprior.create("gaussian", layout="left_hand").fit(x)


def _lightning_checkpoint(path: Path, prior: poseprior.PosePrior, **edits: object) -> Path:
    """What Lightning writes for a PriorModule: its state_dict and the module's on_save_checkpoint entry."""
    module = PriorModule(prior)
    ckpt: dict = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    ckpt["poseprior"]["config"].update(edits)
    torch.save(ckpt, path)
    return path


def test_a_lightning_checkpoint_records_the_checkpoint_record(tmp_path: Path) -> None:
    prior = _prior()
    ckpt: dict = {}
    PriorModule(prior).on_save_checkpoint(ckpt)
    assert ckpt["poseprior"] == checkpoint_record(prior)
    saved = json.loads(prior.save(tmp_path / "folder").joinpath("config.json").read_text())
    assert saved == ckpt["poseprior"]  # the same record as a checkpoint folder's


def test_export_is_the_atomic_save(tmp_path: Path) -> None:
    prior = _prior()
    ckpt = _lightning_checkpoint(tmp_path / "last.ckpt", prior)
    folder = prior.save(tmp_path / "best")
    (folder / "README.md").write_text("the card of an earlier export")
    export_checkpoint(ckpt, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    torch.testing.assert_close(poseprior.load(folder).state_dict()["loc"], prior.state_dict()["loc"])
    export_checkpoint(ckpt, folder, model_card="# exported\n")
    assert (folder / "README.md").read_text() == "# exported\n"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match=r"\['notes\.txt'\].*new or empty folder"):
        export_checkpoint(ckpt, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_lightning_checkpoint_is_validated_like_a_folder(tmp_path: Path) -> None:
    prior = _prior()
    with pytest.raises(CheckpointError, match=r"bad\.ckpt': config field 'min_std' must be a number"):
        prior_from_checkpoint(_lightning_checkpoint(tmp_path / "bad.ckpt", prior, min_std="0.02"))
    prior.loc.data[0] = math.nan
    with pytest.raises(CheckpointError, match=r"nan\.ckpt': tensor 'loc' holds 1 non-finite value"):
        prior_from_checkpoint(_lightning_checkpoint(tmp_path / "nan.ckpt", prior))


class _Payload:
    """Unpickling this would create a file: a .ckpt must never be unpickled beyond plain data."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "executed"))


def test_a_lightning_checkpoint_with_code_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    ckpt = _lightning_checkpoint(tmp_path / "last.ckpt", _prior())
    data = torch.load(ckpt, weights_only=True)
    data["payload"] = _Payload(marker)
    torch.save(data, ckpt)
    with pytest.raises(CheckpointError, match="not a readable Lightning checkpoint"):
        prior_from_checkpoint(ckpt)
    assert not marker.exists()
