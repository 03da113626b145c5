"""The examples run end to end on the bundled data with their short (``--quick``) settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "fit_to_noisy_joints.py": ("hidden MPJPE", "no prior", "gaussian", "prior penalty"),
    "sample_poses.py": ("NLL (nats per pose)", "knee flexion (deg)", "wrote 200 samples"),
    "compare_priors.py": ("| no prior |", "| gaussian |", "| gaussian(covariance=diagonal) |"),
    "two_stage_training.py": ("| 1 | random weights | 3e-3 | 3 |", "| 2 | stage 1, epoch 2 | 3e-4 | 2 |",
                              "epoch002.ckpt (sha256"),
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str, tmp_path: Path) -> None:
    args = [sys.executable, str(ROOT / "examples" / script), "--quick"]
    if script == "sample_poses.py":
        args += ["--out", str(tmp_path / "samples.npz")]
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]  # the repo, even when not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    env.setdefault("HF_HUB_OFFLINE", "1")
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for text in EXPECTED[script]:
        assert text in proc.stdout, f"{script}: {text!r} missing from its output:\n{proc.stdout[-3000:]}"
    if script == "sample_poses.py":
        assert (tmp_path / "samples.npz").is_file()
