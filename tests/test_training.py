"""Lightning training: PriorModule, PoseDataModule, resume, DDP on CPU and the exported weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("pytorch_lightning")

from training_common import FILTERS, TINY_FLOW, ready  # noqa: E402

import poseprior  # noqa: E402
from poseprior import NotInitializedError, metrics  # noqa: E402
from poseprior.data import sample_path  # noqa: E402
from poseprior.training import (  # noqa: E402
    PoseDataModule,
    PriorModule,
    StopAfterEpochs,
    checkpoint_config,
    prior_from_checkpoint,
    train,
)

REPO = Path(__file__).resolve().parents[1]
TRAIN_FILES = [
    "cmu_expmap_test_basketball_basketball_1.npz",
    "cmu_expmap_test_soccer_soccer_1.npz",
    "cmu_expmap_test_walking_extra_walking_11.npz",
    "cmu_expmap_test_running_running_1.npz",
]
VAL_FILES = ["cmu_expmap_test_walking_extra_walking_12.npz", "cmu_expmap_test_walking_extra_walking_10.npz"]

pytestmark = pytest.mark.filterwarnings(*FILTERS)


pytestmark = [pytestmark, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small folder from the bundled CMU sample: 4 training files (432 poses), 2 validation files."""
    folder = tmp_path_factory.mktemp("data")
    for name in TRAIN_FILES + VAL_FILES:
        shutil.copy(sample_path() / name, folder / name)
    (folder / "splits.json").write_text(json.dumps({"train": TRAIN_FILES, "val": VAL_FILES}))
    return folder


def _dm(folder: Path, **kwargs: object) -> PoseDataModule:
    return PoseDataModule(folder, "body", batch_size=64, train_eval_size=128, **kwargs)


def _quick(**kwargs: object) -> dict:
    return dict(accelerator="cpu", num_eval_samples=32, **kwargs)


def test_datamodule_splits_and_shuffling(data: Path) -> None:
    dm = _dm(data)
    dm.setup("fit")
    assert dm.train_poses.shape[1:] == (21, 3) and dm.val_poses.shape[1:] == (21, 3)
    assert dm.train_data.num_files == len(TRAIN_FILES) and dm.val_data.num_files == len(VAL_FILES)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    first = torch.cat(list(loader))
    loader.sampler.set_epoch(1)
    second = torch.cat(list(loader))
    loader.sampler.set_epoch(0)
    again = torch.cat(list(loader))
    # Every epoch is a permutation of the training poses and their mirror images (the body is
    # left/right symmetric); the order depends on the epoch only.
    assert dm.mirror and len(dm.fit_poses) == 2 * len(dm.train_poses)
    assert torch.equal(first.sort(0).values, dm.fit_poses.sort(0).values)
    assert not torch.equal(first, second) and torch.equal(first, again)
    val, train_subset = dm.val_dataloader()
    assert torch.equal(torch.cat(list(val)), dm.val_poses)  # in order, nothing dropped or repeated
    assert len(torch.cat(list(train_subset))) == 128


def test_fit_reduces_val_loss_and_leaves_rng_alone(data: Path, tmp_path: Path) -> None:
    dm = _dm(data)
    # broad_weight=0: the model alone (the fitted broad component would hide its progress in the NLL);
    # little training noise, so that three short epochs show clear progress.
    prior = ready("global_flow", dm, broad_weight=0.0, noise_std=0.02, **TINY_FLOW)
    before = metrics.nll(prior, dm.val_poses)
    state = torch.get_rng_state()
    result = train(prior, dm, root=tmp_path, run="g", max_epochs=3, lr=1e-2, **_quick())
    assert torch.equal(torch.get_rng_state(), state), "training changed the process's RNG state"
    after = metrics.nll(result.prior, dm.val_poses)
    assert after < before - 5.0
    # The logged validation NLL is the NLL of the final prior on the validation split.
    assert result.metrics["val/nll"] == pytest.approx(after, abs=1e-3)
    for key in ("train/loss", "train/nll", "val/bpd", "sample/nll", "sample/mean_abs_err"):
        assert key in result.metrics
    assert list((tmp_path / "lightning_logs" / "g").glob("events.out.tfevents.*"))


def test_resume_reaches_the_uninterrupted_result(data: Path, tmp_path: Path) -> None:
    """An interrupted run resumed from last.ckpt ends with exactly the parameters of an uninterrupted one.

    The flow draws training noise and has a data-dependent (ActNorm) initialization, so this also
    checks that the randomness depends on (seed, step) only and that the initialization is restored.
    """
    kw = _quick(root=tmp_path, max_epochs=2, seed=5)
    full = train(ready("global_flow", _dm(data), **TINY_FLOW), _dm(data), run="full", **kw)
    part = train(
        ready("global_flow", _dm(data), **TINY_FLOW),
        _dm(data),
        run="cut",
        callbacks=[StopAfterEpochs(1)],
        **kw,
    )
    assert part.epochs == 1
    # A fresh process would rebuild the prior from the same arguments; a different seed gives different
    # initial weights, which the checkpoint overrides.
    resumed = train(
        ready("global_flow", _dm(data), seed=99, **TINY_FLOW), _dm(data), run="cut", resume=True, **kw
    )
    assert resumed.epochs == 2
    a, b = full.prior.state_dict(), resumed.prior.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.metrics["val/nll"] == full.metrics["val/nll"]


def test_exported_weights_match_the_trained_prior(data: Path, tmp_path: Path) -> None:
    dm = _dm(data)
    result = train(
        ready("global_flow", dm, **TINY_FLOW), dm, root=tmp_path, run="e", max_epochs=1, **_quick()
    )
    assert sorted(p.name for p in result.final.iterdir()) == ["config.json", "model.safetensors"]
    x = dm.val_poses[:50]
    expected = result.prior.log_prob(x)
    torch.testing.assert_close(poseprior.load(result.final).log_prob(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(
        prior_from_checkpoint(tmp_path / "checkpoints/e/last.ckpt").log_prob(x), expected, rtol=0, atol=0
    )
    meta = checkpoint_config(tmp_path / "checkpoints/e/last.ckpt")
    assert meta["prior"] == "global_flow" and meta["config"] == result.prior.get_config()
    # The architecture after initialize: the excluded and anatomical values are decided.
    assert meta["config"]["exclude"] == result.prior.exclude
    assert meta["config"]["anatomical"] == result.prior.anatomical
    assert isinstance(result.prior.exclude, list) and isinstance(result.prior.anatomical, list)
    best = poseprior.load(result.best)  # one epoch: the best epoch is the last one
    torch.testing.assert_close(best.log_prob(x), expected, rtol=0, atol=0)


def test_module_refuses_a_prior_that_is_notready(data: Path) -> None:
    flow = poseprior.create("global_flow", **TINY_FLOW)
    with pytest.raises(ValueError, match="excluded and anatomical values are not decided yet"):
        PriorModule(flow).setup("fit")
    flow = poseprior.create("global_flow", exclude=[], anatomical=None, **TINY_FLOW)
    with pytest.raises(ValueError, match="excluded and anatomical values are not decided yet"):
        PriorModule(flow).setup("fit")
    flow = poseprior.create("global_flow", exclude=[], anatomical=[], **TINY_FLOW)  # decided, not initialized
    with pytest.raises(NotInitializedError, match="needs a data-dependent initialization"):
        PriorModule(flow).setup("fit")
    with pytest.raises(TypeError, match="expected a PosePrior"):
        PriorModule(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_resume_refuses_another_configuration(data: Path, tmp_path: Path) -> None:
    dm = _dm(data)
    train(ready("gaussian", dm), dm, root=tmp_path, run="r", max_epochs=1, **_quick())
    other = ready("gaussian", dm, covariance="diagonal")
    with pytest.raises(poseprior.CheckpointError, match="differs in: covariance"):
        train(other, dm, root=tmp_path, run="r", max_epochs=2, resume=True, **_quick())
    with pytest.raises(poseprior.CheckpointError, match="cannot resume: .* does not exist"):
        train(ready("gaussian", dm), dm, root=tmp_path, run="never", max_epochs=2, resume=True, **_quick())


def test_import_guard_and_light_package_import(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import sys, poseprior, poseprior.cli, poseprior.plot; "
        "heavy = [m for m in ('pytorch_lightning', 'lightning', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    saved = {
        k: v
        for k, v in sys.modules.items()
        if k == "poseprior.training" or k.startswith("poseprior.training.")
    }
    for key in saved:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)  # what a missing package looks like
    with pytest.raises(ImportError, match="pip install pytorch-lightning"):
        import poseprior.training  # noqa: F401
    monkeypatch.delitem(sys.modules, "poseprior.training", raising=False)


@pytest.mark.slow
def test_ddp_two_cpu_processes(data: Path, tmp_path: Path) -> None:
    """``poseprior train --devices 2 --strategy ddp`` on CPU (gloo): two processes, one exported checkpoint.

    Lightning's ``ddp`` strategy starts the other ranks by re-running the command line, so it is
    tested as users run it, through the ``poseprior`` command in a subprocess (inside pytest it
    would re-run pytest itself).
    """
    # One thread per process: two processes on two cores (torchrun does the same; Lightning does not).
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "poseprior",
        "train",
        "global_flow",
        "--prior-args",
        *(f"{k}={v}" for k, v in TINY_FLOW.items()),
        "--data",
        str(data),
        "--max-epochs",
        "2",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--accelerator",
        "cpu",
        "--lr",
        "1e-2",
        "--eval-samples",
        "16",
        "--batch-size",
        "64",
        "--run",
        "ddp",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr  # two processes joined the process group
    assert proc.stdout.count("| ddp | global_flow |") == 1  # only global rank 0 reports
    run = tmp_path / "checkpoints" / "ddp"
    prior = poseprior.load(run / "final")
    ckpt = torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] > 0
    # Each rank scored half of the validation poses; the logged NLL is the NLL of the whole split.
    score = next(
        v["best_model_score"] for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")
    )
    dm = _dm(data)
    dm.setup("fit")
    best = poseprior.load(run / "best")
    assert float(score) == pytest.approx(metrics.nll(best, dm.val_poses), abs=1e-3)
    assert torch.isfinite(prior.log_prob(dm.val_poses)).all()
