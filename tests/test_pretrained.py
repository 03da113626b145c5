"""The shipped pretrained checkpoints load strictly and reproduce the val NLL of their model cards."""

from __future__ import annotations

import re

import pytest
import torch

import poseprior
from poseprior import metrics
from poseprior.amass import load_split
from poseprior.data import sample_path
from poseprior.hub import _pretrained_folders

EXPECTED = {"gaussian.cmu", "joint_flow.cmu", "global_flow.cmu"}


def test_the_pretrained_checkpoints_are_shipped() -> None:
    assert EXPECTED <= set(poseprior.list_pretrained())
    assert poseprior.list_pretrained("*flow.cmu") == ["global_flow.cmu", "joint_flow.cmu"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pretrained_reproduces_its_model_card(name: str) -> None:
    folder = _pretrained_folders()[name]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (folder / "README.md").read_text()
    expected = float(re.search(r"^val NLL: (-?[0-9.]+)$", card, re.M).group(1))
    prior = poseprior.load_pretrained(name)
    assert prior.name == name.split(".")[0] and not prior.training
    val = load_split(sample_path(), "val").poses_for(prior.layout)
    with torch.no_grad():
        assert metrics.nll(prior, val) == pytest.approx(expected, abs=2e-3)


def test_command_line_resolves_a_prior_name_to_its_pretrained_checkpoint(tmp_path, capsys) -> None:
    import numpy as np

    from poseprior.cli import main

    assert main(["sample", "gaussian", "-n", "4", "--out", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["samples"].shape == (4, 21, 3)
    assert "gaussian" in capsys.readouterr().out
