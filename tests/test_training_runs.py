"""Run folders (issues 15 and 16): last.ckpt every epoch, stages with init_from, exact resume,
finished runs left alone, no silent overwrite, one trainer per run, and run.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("pytorch_lightning")

from training_common import (  # noqa: E402
    FILTERS,
    TRAIN_FILES,
    VAL_FILES,
    data_folder,
    datamodule,
    flow,
    quick,
    same_weights,
)

import poseprior  # noqa: E402
from poseprior import CheckpointError  # noqa: E402
from poseprior.training import StopAfterEpochs, prior_from_checkpoint, read_run_record, train  # noqa: E402
from poseprior.training.checkpoints import checkpoint_run, read_lightning_checkpoint  # noqa: E402

pytestmark = [pytest.mark.filterwarnings(*FILTERS), pytest.mark.usefixtures("one_thread")]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data_folder(tmp_path_factory.mktemp("runs") / "data")


def _epochs(path: Path) -> int:
    return checkpoint_run(read_lightning_checkpoint(path))["epochs_done"]


def _stamps(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.name != ".lock"}


def test_last_ckpt_every_epoch_best_kept_separately(data: Path, tmp_path: Path) -> None:
    """lr=0: the val NLL never improves after epoch 1, yet last.ckpt follows every epoch."""
    dm = datamodule(data)
    result = train(flow(dm), dm, root=tmp_path, run="r", max_epochs=3, lr=0.0, save_every=1, **quick())
    run = tmp_path / "checkpoints" / "r"
    assert _epochs(run / "last.ckpt") == 3
    assert sorted(p.name for p in run.glob("*.ckpt")) == [
        "best-epoch001.ckpt", "epoch001.ckpt", "epoch002.ckpt", "epoch003.ckpt", "last.ckpt",
    ]  # fmt: skip
    assert [_epochs(run / f"epoch{k:03d}.ckpt") for k in (1, 2, 3)] == [1, 2, 3]
    assert result.best_val_nll == pytest.approx(result.metrics["val/nll"], abs=1e-5)


def test_init_from_starts_a_new_stage_with_a_fresh_optimizer(data: Path, tmp_path: Path) -> None:
    dm = datamodule(data)
    train(flow(dm), dm, root=tmp_path, run="s1", max_epochs=3, lr=1e-2, save_every=1, **quick())
    source = tmp_path / "checkpoints" / "s1" / "epoch002.ckpt"
    seen: dict = {}

    class Peek(StopAfterEpochs):
        def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            opt = trainer.optimizers[0]
            state = {k: v.clone() for k, v in pl_module.prior.state_dict().items()}
            seen.update(lr=opt.param_groups[0]["lr"], state=len(opt.state), prior=state)

    stage = flow(dm, seed=7)  # other initial weights: the source's replace them
    result = train(stage, dm, root=tmp_path, run="s2", max_epochs=1, lr=1e-3, init_from=source,
                   callbacks=[Peek(1)], **quick())  # fmt: skip
    start = prior_from_checkpoint(source).state_dict()
    assert all(torch.equal(seen["prior"][k], start[k]) for k in start)
    assert seen["lr"] == 1e-3 and seen["state"] == 0  # the new lr, no Adam moments carried over
    assert result.epochs == 1
    record = read_run_record(tmp_path / "checkpoints" / "s2")
    assert record["init_from"]["path"] == str(source.resolve()) and len(record["init_from"]["sha256"]) == 64
    assert record["options"]["lr"] == 1e-3
    # An exported folder is a source too; a different configuration is named field by field.
    exported = tmp_path / "checkpoints" / "s1" / "final"
    train(flow(dm), dm, root=tmp_path, run="s3", max_epochs=1, init_from=exported, **quick())
    with pytest.raises(CheckpointError, match=r"differs in: blocks \(1 there, 2 here\)"):
        train(flow(dm, blocks=2), dm, root=tmp_path, run="s4", max_epochs=1, init_from=source, **quick())


def test_resume_refuses_changed_options_and_continues_with_the_same(data: Path, tmp_path: Path) -> None:
    dm = datamodule(data)
    kw = quick(root=tmp_path, run="r", max_epochs=2, lr=1e-2, ema=0.9)
    train(flow(dm), dm, callbacks=[StopAfterEpochs(1)], **kw)
    last = tmp_path / "checkpoints" / "r" / "last.ckpt"
    for change, message in [
        ({"lr": 1e-3}, r"lr 0\.01 -> 0\.001"),
        ({"weight_decay": 0.1}, r"weight_decay 0 -> 0\.1"),
        ({"lr_schedule": "cosine"}, r"lr_schedule 'constant' -> 'cosine'"),
        ({"ema": None}, r"ema 0\.9 -> None"),
        ({"grad_clip": 1.0}, r"grad_clip 10 -> 1"),
    ]:
        with pytest.raises(CheckpointError, match=message + r".*--init-from .*last\.ckpt"):
            train(flow(dm), dm, resume=True, **{**kw, **change})
    with pytest.raises(CheckpointError, match=r"batch_size 64 -> 32"):
        train(flow(dm), datamodule(data, batch_size=32), resume=True, **kw)
    assert _epochs(last) == 1  # nothing was trained by the refused attempts
    resumed = train(flow(dm), dm, resume=True, **kw)
    assert resumed.epochs == 2 and _epochs(last) == 2


def test_resume_of_a_finished_run_changes_nothing(data: Path, tmp_path: Path) -> None:
    dm = datamodule(data)
    first = train(flow(dm), dm, root=tmp_path, run="f", max_epochs=1, **quick())
    before = _stamps(tmp_path)
    again = train(flow(dm, seed=3), dm, root=tmp_path, run="f", max_epochs=1, resume=True, **quick())
    assert again.already_finished and again.trainer is None and again.epochs == 1
    assert _stamps(tmp_path) == before  # no checkpoint, export, log or record was written
    assert same_weights(again.prior, first.prior)
    assert again.metrics["val/nll"] == pytest.approx(first.metrics["val/nll"])


def test_an_existing_run_is_refused_unless_resumed_or_overwritten(data: Path, tmp_path: Path) -> None:
    dm = datamodule(data)
    train(flow(dm), dm, root=tmp_path, run="x", max_epochs=1, save_every=1, **quick())
    final = tmp_path / "checkpoints" / "x" / "final" / "model.safetensors"
    before = final.read_bytes()
    with pytest.raises(
        CheckpointError, match=r"run 'x' already exists .*holds .*final/.*--resume.*--overwrite"
    ):
        train(flow(dm, seed=4), dm, root=tmp_path, run="x", max_epochs=1, **quick())
    assert final.read_bytes() == before
    train(flow(dm, seed=4), dm, root=tmp_path, run="x", max_epochs=2, overwrite=True, **quick())
    run = tmp_path / "checkpoints" / "x"
    assert not (run / "epoch001.ckpt").exists()  # the old run's files are gone
    assert final.read_bytes() != before and read_run_record(run)["options"]["max_epochs"] == 2
    # Logs of a run without checkpoints (killed in its first epoch) count too.
    (tmp_path / "lightning_logs" / "y").mkdir(parents=True)
    (tmp_path / "lightning_logs" / "y" / "events.out.tfevents.0").write_text("")
    with pytest.raises(CheckpointError, match=r"run 'y' already exists .*logs in"):
        train(flow(dm), dm, root=tmp_path, run="y", max_epochs=1, **quick())


def test_a_second_trainer_of_the_same_run_is_refused(data: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Two processes: one holds the run (as a trainer does), the command line in another is refused;
    once the holder is killed the kernel releases the lock."""
    from poseprior.cli import main

    run_dir = tmp_path / "checkpoints" / "gaussian"
    code = (
        "import sys, time; from pathlib import Path; from poseprior.training.runs import RunLock\n"
        f"with RunLock(Path({str(run_dir)!r})):\n    print('locked', flush=True); time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = ["train", "gaussian", "--data", str(data), "--out", str(tmp_path), "--eval-samples", "8"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"in use by another trainer (pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert not (run_dir / "final").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert main(argv) == 0
    assert (run_dir / "final" / "model.safetensors").is_file()


def test_run_json_records_the_run(data: Path, tmp_path: Path) -> None:
    dm = datamodule(data)
    result = train(flow(dm), dm, root=tmp_path, run="rec", max_epochs=2, lr=1e-2, seed=3, save_every=2,
                   record={"prior_args": {"blocks": 1}}, **quick())  # fmt: skip
    path = tmp_path / "checkpoints" / "rec" / "run.json"
    assert result.record == path
    record = json.loads(path.read_text())
    assert record["status"] == "finished" and record["epochs_done"] == 2 and record["run"] == "rec"
    o = record["options"]
    assert (o["prior"], o["lr"], o["seed"], o["max_epochs"], o["batch_size"], o["save_every"]) == (
        "global_flow", 1e-2, 3, 2, 64, 2,
    )  # fmt: skip
    assert o["prior_args"] == {"blocks": 1} and o["data"] == str(data.resolve())
    assert record["prior"]["config"] == result.prior.get_config()
    assert record["data"]["files"] == {"train": TRAIN_FILES, "val": VAL_FILES}
    assert len(record["data"]["poses_sha256"]) == 64 and record["data"]["poses"] == {"train": 335, "val": 100}
    assert {"torch", "pytorch-lightning", "poseprior", "python"} <= set(record["versions"])
    git = record["git"]
    assert git is None or len(git["commit"]) == 40
    assert record["metrics"]["val/nll"] == pytest.approx(result.metrics["val/nll"])
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # written by a rename


def test_run_json_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from poseprior.training import runs

    runs.write_run_record(tmp_path, {"run_format": 1, "options": {"lr": 1}})

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(runs.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        runs.write_run_record(tmp_path, {"run_format": 1, "options": {"lr": 2}})
    assert read_run_record(tmp_path)["options"] == {"lr": 1}  # the previous record, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file left
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable run record"):
        read_run_record(tmp_path)


def test_an_interrupted_run_is_recorded_and_resumes(data: Path, tmp_path: Path) -> None:
    """Ctrl+C during epoch 2: Lightning stops gracefully; last.ckpt holds epoch 1, run.json says so."""

    class CtrlC(StopAfterEpochs):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            if trainer.current_epoch == 1 and batch_idx == 2:
                raise KeyboardInterrupt

    dm = datamodule(data)
    kw = quick(root=tmp_path, run="i", max_epochs=2)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(flow(dm), dm, callbacks=[CtrlC(99)], **kw)
    run = tmp_path / "checkpoints" / "i"
    record = read_run_record(run)
    assert (
        record["status"] == "interrupted" and record["epochs_done"] == 1 and _epochs(run / "last.ckpt") == 1
    )
    resumed = train(flow(dm), dm, resume=True, **kw)
    assert resumed.epochs == 2 and read_run_record(run)["status"] == "finished"
    assert len(read_run_record(run)["resumes"]) == 1
    full = train(flow(dm), dm, **{**kw, "run": "full"})
    assert same_weights(resumed.prior, full.prior)  # the resumed run is the uninterrupted one


def test_train_rejects_unknown_options(data: Path, tmp_path: Path) -> None:
    dm = datamodule(data)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['max_epoch'\]"):
        train(flow(dm), dm, root=tmp_path, max_epoch=2)
    for bad, message in [
        ({"max_epochs": 0}, r"max_epochs must be an integer >= 1, got 0"),  # (issue 15: trained nothing)
        ({"lr": float("nan")}, r"lr must be a finite number >= 0, got nan"),
        ({"save_every": 0}, r"save_every must be an integer >= 1 or None, got 0"),
        ({"ema": 1.0}, r"ema must be a decay in \(0, 1\) or None, got 1\.0"),
        ({"precision": "8"}, r"precision must be one of 32, bf16-mixed, 16-mixed, got '8'"),
    ]:
        with pytest.raises(ValueError, match=message):
            train(flow(dm), dm, root=tmp_path, **bad)
    assert not (tmp_path / "checkpoints").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="resume continues a run and init_from starts a new one"):
        train(flow(dm), dm, root=tmp_path, resume=True, init_from=tmp_path)
    with pytest.raises(ValueError, match="fitted in closed form .* init_from"):
        train(poseprior.create("gaussian"), dm, root=tmp_path, init_from=tmp_path)
