"""hand_vae trains through the Lightning trainer on AMASS-format files with (synthetic) finger motion,
and the main job reports it there while it skips it, saying why, on data without finger motion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import poseprior
from poseprior.cli import main
from poseprior.synthetic import synthetic_hand_poses


def _amass_folder(root: Path, hands: bool) -> Path:
    """SMPL-H AMASS-format files (156 columns); the left hand holds SYNTHETIC poses if ``hands``."""
    root.mkdir()
    gen = torch.Generator().manual_seed(0)
    names = []
    for k in range(4):
        n = 150
        poses = np.zeros((n, 156), np.float32)
        poses[:, 3:66] = 0.2 * torch.randn(n, 63, generator=gen).numpy()
        if hands:
            poses[:, 66:111] = synthetic_hand_poses(n, generator=gen).reshape(n, 45).numpy()
        name = f"clip_{k}.npz"
        np.savez(root / name, poses=poses, trans=np.zeros((n, 3), np.float32), betas=np.zeros(16, np.float32),
                 gender=np.str_("neutral"), mocap_framerate=np.float64(30.0))
        names.append(name)
    (root / "splits.json").write_text(json.dumps({"train": names[:3], "val": names[3:]}))
    return root


@pytest.mark.slow
def test_hand_vae_trains_with_lightning_on_amass_hand_data(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = _amass_folder(tmp_path / "data", hands=True)
    out = tmp_path / "runs"
    args = ["train", "hand_vae", "--data", str(data), "--layout", "left_hand", "--max-epochs", "2",
            "--prior-args", "latent_dim=4", "hidden_features=16", "num_layers=1", "num_samples=8",
            "--out", str(out), "--run", "hv", "--no-progress"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "hand_vae" in table and "left_hand" in table
    prior = poseprior.load(out / "checkpoints" / "hv" / "final")
    assert prior.name == "hand_vae" and not prior.has_exact_log_prob and prior.dim == 45
    # The synthetic noise (0.03 rad) of some finger values is below their 3-degree floor: they are
    # anatomical (in the density, not learned), decided by train's initialize.
    assert 0 < prior.model_dim < 45 and len(prior.anatomical_names()) == 45 - prior.model_dim
    x = synthetic_hand_poses(5, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(prior.log_prob(x)).all()


def test_demo_reports_hand_vae_only_when_hands_move(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    still = _amass_folder(tmp_path / "still", hands=False)
    args = ["demo", "--data", str(still), "--priors", "hand_vae", "--quick", "--out", str(tmp_path / "o1")]
    assert main(args) == 0
    assert "skipping hand_vae on layout 'left_hand': every value of the 'left_hand' joints is constant" in (
        capsys.readouterr().out
    )
    moving = _amass_folder(tmp_path / "moving", hands=True)
    args = ["demo", "--data", str(moving), "--priors", "hand_vae", "--quick", "--out", str(tmp_path / "o2"),
            "--num-samples", "10"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| hand_vae | left_hand | 45 | estimate |" in out
