"""The ``poseprior`` command line through ``poseprior.cli.main``, on small folders from the bundled sample."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import poseprior
from poseprior.cli import main
from poseprior.data import sample_path

TRAIN_FILES = [
    "cmu_expmap_test_basketball_basketball_1.npz",
    "cmu_expmap_test_soccer_soccer_1.npz",
    "cmu_expmap_test_running_running_1.npz",
]
VAL_FILES = ["cmu_expmap_test_walking_extra_walking_12.npz"]

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*", "ignore:.*exists and is not empty.*", "ignore:.*LeafSpec.*"
)


def _folder(root: Path, splits: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in {f for files in splits.values() for f in files}:
        shutil.copy(sample_path() / name, root / name)
    (root / "splits.json").write_text(json.dumps(splits))
    return root


pytestmark = [pytestmark, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("cli") / "data", {"train": TRAIN_FILES, "val": VAL_FILES})


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    """The command fails with exit code 2 and an error message matching ``match`` (a regex)."""
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert re.search(match, err), err


def _stamps(root: Path) -> dict[Path, int]:
    """Modification times of every file under ``root`` but the lock files (which hold a pid)."""
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.name != ".lock"}


def _table(out: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r] for r in rows]


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["list"], capsys)
    assert code == 0
    for name in poseprior.list_priors():
        assert name in out
    assert "layouts:" in out and "smplx53" in out


def test_demo_still_runs(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "demo",
        "--data",
        data,
        "--out",
        tmp_path,
        *"--priors gaussian --quick --num-samples 5 --no-progress".split(),
    ]
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert "| gaussian(covariance=diagonal) | body |" in out and (tmp_path / "results.json").is_file()


def test_train_eval_sample_resume_export(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = "--lr 3e-2 --batch-size 64 --eval-samples 16 --accelerator cpu --no-progress".split()
    common = ["--data", data, "--out", tmp_path, *options]
    code, out, err = run(["train", "gaussian", "--max-epochs", "1", *common], capsys)
    assert code == 0, err
    (row,) = [r for r in _table(out) if r[0] == "gaussian"]
    assert row[1:5] == ["gaussian", "body", "63", "1"]  # D: every body value, learned or anatomical
    run_dir = tmp_path / "checkpoints" / "gaussian"
    for path in (
        "last.ckpt",
        "run.json",
        "final/config.json",
        "final/model.safetensors",
        "best/model.safetensors",
    ):
        assert (run_dir / path).is_file(), path
    assert list((tmp_path / "lightning_logs" / "gaussian").glob("events.out.tfevents.*"))

    # The same run again without --resume is refused; with it, a finished run is left as it is.
    assert_error(["train", "gaussian", "--max-epochs", "2", *common], capsys, "already exists.*--resume")
    before = _stamps(tmp_path)
    code, out, err = run(["train", "gaussian", "--max-epochs", "2", "--resume", *common], capsys)
    assert code == 0, err
    assert "already finished" in out and "nothing changed" in out
    assert _stamps(tmp_path) == before

    # eval: one row per checkpoint and split; the numbers are the NLL of the exported prior.
    code, out, err = run(["eval", run_dir / "final", run_dir / "last.ckpt", "--data", data], capsys)
    assert code == 0, err
    rows = [r for r in _table(out) if r[0] != "checkpoint" and not r[0].startswith("---")]
    assert [(r[5], r[6]) for r in rows] == [("train", "335"), ("val", "100")] * 2
    prior = poseprior.load(run_dir / "final")
    val = poseprior.amass.load_split(data, "val").poses_for("body")
    assert float(rows[1][7]) == pytest.approx(poseprior.metrics.nll(prior, val), abs=0.01)
    assert rows[1][7] == rows[3][7]  # the .ckpt holds the same weights as final/

    # sample: an AMASS-style npz and a PNG of stick figures.
    png_args = ["--png", tmp_path / "s.png", *"--cols 3 --seed 3".split()]
    code, out, err = run(["sample", run_dir, "-n", "6", "--out", tmp_path / "s.npz", *png_args], capsys)
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as f:
        assert f["poses"].shape == (6, 156) and f["samples"].shape == (6, 21, 3)
        again = poseprior.load(run_dir / "best").sample(6, generator=torch.Generator().manual_seed(3))
        np.testing.assert_allclose(f["samples"], again.numpy(), rtol=0, atol=1e-6)
    png = (tmp_path / "s.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    code, out, err = run(["export", run_dir / "last.ckpt", "--out", tmp_path / "exported"], capsys)
    assert code == 0, err
    x = prior.sample(4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(poseprior.load(tmp_path / "exported").log_prob(x), prior.log_prob(x))


def test_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert_error(["train", "gaussian", "--data", missing], capsys, r"data folder .*nowhere.* does not exist")
    assert_error(["eval", "x", "--data", missing], capsys, r"data folder .*nowhere.* does not exist")
    assert_error(
        ["train", "gausian", "--data", data], capsys, r"unknown prior 'gausian'.*Did you mean 'gaussian'"
    )

    empty = _folder(tmp_path / "empty", {"train": TRAIN_FILES[:1]})
    (empty / "splits.json").write_text(json.dumps({"train": TRAIN_FILES[:1], "val": []}))
    assert_error(
        ["train", "gaussian", "--data", empty, "--out", tmp_path],
        capsys,
        r"split 'val' must be a non-empty list of file names",
    )
    (empty / "splits.json").write_text(json.dumps({"train": TRAIN_FILES[:1]}))
    assert_error(
        ["train", "gaussian", "--data", empty, "--out", tmp_path],
        capsys,
        r"no split 'val' in the splits file; available splits: 'train'",
    )

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert_error(["eval", bad, "--data", data], capsys, r"bad\.ckpt' is not a readable Lightning checkpoint")
    assert_error(["sample", bad, "--out", tmp_path / "s.npz"], capsys, r"not a readable Lightning checkpoint")
    folder = tmp_path / "corrupt"
    poseprior.create("gaussian", layout="left_hand").save(folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 10)
    assert_error(["eval", folder, "--data", data], capsys, r"not a readable safetensors file")
    assert_error(
        ["sample", tmp_path / "absent", "--out", tmp_path / "s.npz"],
        capsys,
        r"checkpoint .*absent.* does not exist",
    )
    assert_error(
        ["sample", "hand_vae", "--out", tmp_path / "s.npz"],
        capsys,
        r"prior 'hand_vae' has no pretrained checkpoint",
    )
    hand = tmp_path / "hand"
    x = 0.1 * torch.randn(50, 15, 3, generator=torch.Generator().manual_seed(0))
    poseprior.create("gaussian", layout="left_hand").fit(x).save(hand)
    assert_error(
        ["sample", hand, "--out", tmp_path / "h.npz", "--png", tmp_path / "h.png"],
        capsys,
        r"layout 'left_hand' lacks body joints",
    )
    assert not (tmp_path / "h.npz").exists()  # nothing written before the error
    assert_error(
        ["sample", "no_such.thing", "--out", tmp_path / "s.npz"],
        capsys,
        r"neither a checkpoint folder, a \.ckpt file nor a pretrained checkpoint name",
    )


def test_convert_smplx53_to_smplx_and_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = np.random.default_rng(0)
    poses = gen.normal(0, 0.3, (7, 159)).astype(np.float32)
    src = tmp_path / "a.npz"
    np.savez(src, poses=poses, trans=np.zeros((7, 3), np.float32), gender=np.str_("female"))
    code, out, err = run(["convert", src, tmp_path / "b.npz", "--to", "smplx"], capsys)
    assert code == 0, err
    assert "smplx53 (53 joints" in out and "zero-filled: left_eye, right_eye" in out
    with np.load(tmp_path / "b.npz") as f:
        x = f["poses"].reshape(7, 55, 3)
        assert f["poses"].shape == (7, 165) and str(f["gender"]) == "female"
    assert not x[:, 23:25].any()  # SMPL-X eyes: indices 23, 24
    np.testing.assert_array_equal(x[:, :23], poses.reshape(7, 53, 3)[:, :23])
    np.testing.assert_array_equal(x[:, 25:], poses.reshape(7, 53, 3)[:, 23:])
    # The data loader reads the result as SMPL-X.
    assert poseprior.amass.load_npz(tmp_path / "b.npz").source_layouts == ["smplx"]

    code, _, err = run(["convert", tmp_path / "b.npz", tmp_path / "c.npz", "--to", "smplx53"], capsys)
    assert code == 0, err
    with np.load(tmp_path / "c.npz") as f:
        np.testing.assert_array_equal(f["poses"], poses)

    # Dropping data needs consent; filling absent joints too.
    with np.load(tmp_path / "b.npz") as f:
        y = f["poses"].copy()
    y.reshape(7, 55, 3)[:, 23] = 0.1
    np.savez(tmp_path / "eyes.npz", poses=y)
    assert_error(
        ["convert", tmp_path / "eyes.npz", tmp_path / "d.npz", "--to", "smplx53"],
        capsys,
        r"left_eye are not zero.*--drop-nonzero",
    )
    assert_error(
        ["convert", src, tmp_path / "d.npz", "--to", "body"],
        capsys,
        r"drops joint\(s\) that are not zero: pelvis, jaw.*--drop-nonzero",
    )
    code, _, _ = run(["convert", src, tmp_path / "d.npz", "--to", "body", "--drop-nonzero"], capsys)
    assert code == 0
    with np.load(tmp_path / "d.npz") as f:
        np.testing.assert_array_equal(f["poses"], poses.reshape(7, 53, 3)[:, 1:22].reshape(7, 63))
    assert_error(
        ["convert", tmp_path / "d.npz", tmp_path / "e.npz", "--from", "body", "--to", "smplh"],
        capsys,
        r"not in layout 'body': pelvis.*missing=\"zero\"",
    )


def test_convert_rotation_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    poses = np.random.default_rng(1).normal(0, 0.5, (5, 156)).astype(np.float64)
    np.savez(tmp_path / "a.npz", poses=poses)
    code, _, err = run(
        ["convert", tmp_path / "a.npz", tmp_path / "m.npz", "--to", "smplh", "--to-rotation", "matrix"],
        capsys,
    )
    assert code == 0, err
    with np.load(tmp_path / "m.npz") as f:
        assert f["poses"].shape == (5, 52, 3, 3)
    code, _, err = run(
        ["convert", tmp_path / "m.npz", tmp_path / "b.npz", "--to", "smplh", "--rotation", "matrix"], capsys
    )
    assert code == 0, err
    with np.load(tmp_path / "b.npz") as f:
        np.testing.assert_allclose(f["poses"], poses, atol=1e-7)  # angles below pi: the same axis-angle
    assert_error(
        ["convert", tmp_path / "missing.npz", tmp_path / "x.npz", "--to", "smplx"],
        capsys,
        r"missing\.npz' does not exist",
    )
