"""``poseprior train``: closed-form priors, run records re-run with --config, stages, exact resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from training_common import FILTERS, data_folder, datamodule, flow, flow_args, quick

import poseprior
from poseprior.cli import main

pytest.importorskip("pytorch_lightning")
pytestmark = [pytest.mark.filterwarnings(*FILTERS), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data_folder(tmp_path_factory.mktemp("cli_train") / "data")


def run(argv: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _flow(data: Path, out: Path, *extra: object) -> list:
    quick = ["--batch-size", "64", "--eval-samples", "8", "--accelerator", "cpu", "--no-progress"]
    return ["train", "global_flow", *flow_args(), "--data", data, "--out", out, *quick, *extra]


def test_train_gaussian_is_the_closed_form_fit(data: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, out, err = run(["train", "gaussian", "--data", data, "--out", tmp_path, "--lr", "0.05"], capsys)
    assert code == 0, err
    assert "fitted in closed form, one pass (--lr not used)" in out
    trained = poseprior.load(tmp_path / "checkpoints" / "gaussian" / "final")
    train = poseprior.amass.load_split(data, "train").poses_for("body")
    fitted = poseprior.create("gaussian").fit(train)
    val = poseprior.amass.load_split(data, "val").poses_for("body")
    torch.testing.assert_close(trained.log_prob(val), fitted.log_prob(val), rtol=1e-6, atol=1e-5)
    record = json.loads((tmp_path / "checkpoints" / "gaussian" / "run.json").read_text())
    assert record["options"]["closed_form"] is True and record["status"] == "finished"
    row = next(line for line in out.splitlines() if line.startswith("| gaussian |"))
    val_nll = float(row.split("|")[8])
    assert val_nll == pytest.approx(poseprior.metrics.nll(fitted, val), abs=0.01)


def test_config_reruns_a_run_with_identical_weights(data: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, _, err = run(
        _flow(data, tmp_path, "--max-epochs", "2", "--seed", "3", "--lr", "1e-2", "--run", "a"), capsys
    )
    assert code == 0, err
    record = tmp_path / "checkpoints" / "a" / "run.json"
    code, out, err = run(
        ["train", "--config", record, "--out", tmp_path, "--run", "b", "--no-progress"], capsys
    )
    assert code == 0, err
    a, b = (poseprior.load(tmp_path / "checkpoints" / r / "final") for r in ("a", "b"))
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # Options given with --config override the record's; the rest (prior arguments, seed) are kept.
    code, _, err = run(["train", "--config", record, "--out", tmp_path, "--run", "c", "--lr", "2e-2"], capsys)
    assert code == 0, err
    c = json.loads((tmp_path / "checkpoints" / "c" / "run.json").read_text())["options"]
    assert (c["lr"], c["seed"], c["prior_args"]["hidden_features"], c["max_epochs"]) == (2e-2, 3, 8, 2)
    assert c["data"] == str(data.resolve())
    # The record's own run name is taken by default: an existing run, refused.
    code, _, err = run(["train", "--config", record, "--out", tmp_path], capsys)
    assert code == 2 and "run 'a' already exists" in err
    # A record of poseprior.training.train (no constructor arguments given): its resolved config.
    from poseprior.training import train

    dm = datamodule(data)
    train(flow(dm), dm, root=tmp_path, run="lib", max_epochs=1, **quick())
    code, _, err = run(["train", "--config", tmp_path / "checkpoints" / "lib" / "run.json", "--out", tmp_path,
                        "--run", "lib2"], capsys)  # fmt: skip
    assert code == 0, err
    lib, lib2 = (poseprior.load(tmp_path / "checkpoints" / r / "final") for r in ("lib", "lib2"))
    assert lib2.get_config() == lib.get_config()


def test_stages_and_exact_resume_on_the_command_line(data: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code, _, err = run(_flow(data, tmp_path, "--max-epochs", "3", "--save-every", "1", "--run", "s1"), capsys)
    assert code == 0, err
    epoch2 = tmp_path / "checkpoints" / "s1" / "epoch002.ckpt"
    stage2 = _flow(data, tmp_path, "--max-epochs", "1", "--lr", "1e-4", "--init-from", epoch2, "--run", "s2")
    code, out, err = run(stage2, capsys)
    assert code == 0, err
    assert f"(a new stage from {epoch2})" in out
    assert json.loads((tmp_path / "checkpoints" / "s2" / "run.json").read_text())["init_from"]["path"] == str(
        epoch2.resolve()
    )
    # --resume with another optimizer option: one line, exit 2, pointing at --init-from.
    resume = ["train", "--run", "s1", "--out", tmp_path, "--resume", "--max-epochs", "4"]
    code, _, err = run([*resume, "--lr", "5e-4"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and re.search(r"lr 0\.001 -> 0\.0005.*--init-from", err), err
    # Without it the run continues from its own record (prior, data and options), one more epoch.
    code, out, err = run(resume, capsys)
    assert code == 0, err
    assert "(resumed)" in out and "| s1 | global_flow | body | 63 | 4 |" in out
    code, _, err = run([*stage2[:-2], "--run", "s3", "--resume"], capsys)  # --init-from and --resume
    assert code == 2 and "not allowed with argument" in err


def test_training_options_are_checked_and_recorded(data: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    for bad, message in [
        (["--max-epochs", "0"], r"--max-epochs: expected an integer >= 1, got '0'"),
        (["--ema", "1"], r"--ema: expected a decay in \[0, 1\)"),
        (["--precision", "8"], r"--precision: invalid choice"),
        (["--grad-clip", "-1"], r"--grad-clip: expected a finite number >= 0"),
        (["--num-workers", "-1"], r"--num-workers: expected an integer >= 0"),
    ]:
        code, _, err = run(_flow(data, tmp_path, *bad), capsys)
        assert code == 2 and re.search(message, err), err
    options = [
        "--max-epochs",
        "1",
        "--precision",
        "bf16-mixed",
        "--ema",
        "0.9",
        "--grad-clip",
        "0",
        "--run",
        "o",
    ]
    code, out, err = run(_flow(data, tmp_path, *options, "--num-workers", "1"), capsys)
    assert code == 0, err
    o = json.loads((tmp_path / "checkpoints" / "o" / "run.json").read_text())["options"]
    assert (o["precision"], o["ema"], o["grad_clip"], o["num_workers"]) == ("bf16-mixed", 0.9, None, 1)
    code, _, err = run(_flow(data, tmp_path, *options), capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    code, _, err = run(_flow(data, tmp_path, *options, "--overwrite", "--ema", "0"), capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "checkpoints" / "o" / "run.json").read_text())["options"]["ema"] is None


def test_divergence_is_reported_as_the_optimization_not_the_data(data: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Issue 15: a diverged run used to be reported as 'the poses contain NaN or inf ... repair those
    frames'. It now stops with the step and learning rate and points at the optimizer options."""
    code, out, err = run([*_flow(data, tmp_path, "--max-epochs", "3", "--lr", "1e12")], capsys)
    assert code == 2, (out, err)
    last = err.strip().splitlines()[-1]
    assert "training diverged" in last and "learning rate 1e+12" in last and "lower --lr" in last
    assert "repair" not in err and "Traceback" not in err
