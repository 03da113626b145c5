"""User mistakes on the command line end as one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poseprior.cli import main
from poseprior.data import sample_path


def fails(argv: list[object], capsys: pytest.CaptureFixture[str], match: str) -> str:
    """``main(argv)`` returns 2 and the last line of stderr is ``poseprior <command>: error: ...``
    matching ``match``; argparse's usage lines may precede it, a traceback may not."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert re.match(rf"poseprior {argv[0]}: error: ", last), err
    assert re.search(match, last), err
    return last


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["train", "gaussian", "--batch-size", "0"], r"argument --batch-size: expected an integer >= 1, got"),
        (["train", "gaussian", "--batch-size", "2.5"], r"--batch-size: expected an integer >= 1, got '2.5'"),
        (["train", "gaussian", "--lr", "-1"], r"argument --lr: expected a finite number > 0, got '-1'"),
        (["train", "gaussian", "--lr", "nan"], r"--lr: expected a finite number > 0, got 'nan'"),
        (["train", "gaussian", "--lr", "inf"], r"--lr: expected a finite number > 0, got 'inf'"),
        (["train", "gaussian", "--fps", "0"], r"--fps: expected a finite number > 0, got '0'"),
        (["train", "gaussian", "--max-epochs", "0"], r"--max-epochs: expected an integer >= 1, got '0'"),
        (["train", "gaussian", "--max-epochs", "-1"], r"--max-epochs: expected an integer >= 1, got '-1'"),
        (["train", "gaussian", "--weight-decay", "-0.1"], r"--weight-decay: expected a finite number >= 0"),
        (["train", "gaussian", "--eval-samples", "-1"], r"--eval-samples: expected an integer >= 0"),
        (["eval", "gaussian", "--batch-size", "0"], r"--batch-size: expected an integer >= 1, got '0'"),
        (["eval", "gaussian", "--fps", "-30"], r"--fps: expected a finite number > 0, got '-30'"),
        (["sample", "gaussian", "-n", "-3"], r"argument -n/--num-samples: expected an integer >= 1, got '-3"),
        (["sample", "gaussian", "--cols", "0"], r"--cols: expected an integer >= 1, got '0'"),
        (["demo", "--num-samples", "0"], r"--num-samples: expected an integer >= 1, got '0'"),
    ],
)
def test_bad_numbers_are_refused_by_the_parser(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[0] in ("train", "eval"):
        argv = [*argv, "--data", str(tmp_path)]
    fails([*argv, "--out", str(tmp_path / "o")] if argv[0] != "eval" else argv, capsys, match)
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_help_and_usage_errors_return_their_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0 and "poseprior" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2 and "invalid choice" in capsys.readouterr().err


# The defaults in the messages are matched loosely: they are the priors' to change.
@pytest.mark.parametrize(
    ("prior", "items", "match"),
    [
        ("gaussian", ["min_std=abc"], r"'min_std=abc': min_std of gaussian takes a finite number \(default"),
        ("gaussian", ["min_std=NaN"], r"min_std of gaussian takes a finite number .*got 'NaN'"),
        ("gaussian", ["covariance=1"], r"covariance of gaussian takes text \(default 'full'\), got '1'"),
        ("global_flow", ["blocks=2.5"], r"blocks of global_flow takes an integer \(default \d+\), got '2.5'"),
        ("hand_vae", ["mirror=1"], r"mirror of hand_vae takes true or false \(default False\)"),
        ("gaussian", ["foo"], r"--prior-args takes KEY=VALUE items .*got 'foo'"),
        ("gaussian", ["min_std=0.1", "bogus=1"], r"'bogus=1': gaussian has no argument 'bogus'; it takes"),
        ("joint_flow", ["hiden=64"], r"no argument 'hiden' \(did you mean 'hidden'\?\); it takes layout, "),
    ],
)
def test_bad_prior_args_are_refused_before_any_work(
    prior: str, items: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    fails(["train", prior, "--data", tmp_path, "--out", out, "--prior-args", *items], capsys, match)
    assert not out.exists()


def test_unreadable_files_and_rejected_values_end_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = (sample_path() / "cmu_01_01.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(real[: len(real) // 2])
    fails(["convert", tmp_path / "cut.npz", tmp_path / "o.npz", "--to", "body"], capsys,
          r"cut.npz: cannot be read as an npz archive \(BadZipFile: .*corrupt or truncated")  # fmt: skip
    raw = bytearray(real)
    start = raw.index(b"poses.npy") + 2000  # inside the poses array, the zip directory intact
    raw[start : start + 64] = bytes(64)
    (tmp_path / "crc.npz").write_bytes(bytes(raw))
    fails(["convert", tmp_path / "crc.npz", tmp_path / "o.npz", "--to", "body"], capsys,
          r"crc.npz: cannot read key 'poses' \(BadZipFile: Bad CRC-32")  # fmt: skip
    assert not (tmp_path / "o.npz").exists()

    # A ValueError of a constructor (a value the CLI cannot check by type) and one of matplotlib.
    out = tmp_path / "o"
    argv = ["train", "gaussian", "--data", sample_path(), "--out", out]
    argv += ["--prior-args", "covariance=spherical"]
    fails(argv, capsys, r"covariance must be 'full' or 'diagonal', got 'spherical'")
    fails(["sample", "gaussian", "--out", tmp_path / "s.npz", "--png", tmp_path / "s.xyz"], capsys,
          r"[Ff]ormat 'xyz' is not supported")  # fmt: skip

    # An OSError: the output named is a folder.
    np.savez(tmp_path / "a.npz", poses=np.zeros((2, 63), np.float32))
    (tmp_path / "folder").mkdir()
    fails(["convert", tmp_path / "a.npz", tmp_path / "folder", "--to", "body"], capsys,
          r"Is a directory: '.*folder'$")  # fmt: skip


def test_a_reader_that_goes_away_is_not_a_traceback() -> None:
    """``poseprior list | head -1``: the pipe closes before poseprior has written everything."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "poseprior", "list"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # closed before the child (still importing torch) writes anything
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def _writers(tmp_path: Path, bad: Path) -> list[tuple[list[object], str]]:
    """Every command that writes, with its output under ``bad``, and the option named in the error."""
    np.savez(tmp_path / "a.npz", poses=np.zeros((2, 63), np.float32))
    data = ["--data", tmp_path]
    return [
        (["demo", "--out", bad / "o"], "--out"),
        (["train", "gaussian", *data, "--out", bad / "o"], "--out"),
        (["sample", "gaussian", "--out", bad / "s.npz"], "--out"),
        (["sample", "gaussian", "--out", tmp_path / "s.npz", "--png", bad / "s.png"], "--png"),
        (["convert", tmp_path / "a.npz", bad / "b.npz", "--to", "body"], "output"),
        (["export", tmp_path / "run.ckpt", "--out", bad / "o"], "--out"),
        (["bench", "--out", bad / "o"], "--out"),
    ]


def test_an_output_under_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "file"
    file.write_text("")
    for argv, option in _writers(tmp_path, file / "sub"):
        fails(argv, capsys, rf"{option} '.*file/sub.*': '.*file' is a file, not a folder; pass another path")
    assert not (tmp_path / "s.npz").exists()  # refused before sampling


def test_a_read_only_output_folder_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes into any folder: say that this one is read-only
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and access(p, mode))
    else:
        locked.chmod(0o555)
    try:
        for argv, option in _writers(tmp_path, locked):
            fails(argv, capsys, rf"{option} '.*locked.*': cannot write into '.*locked' \(no permission")
    finally:
        locked.chmod(0o755)
    assert not any(locked.iterdir())


def test_sample_prints_the_paths_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sample", "gaussian", "-n", "2", "--out", tmp_path / "NAME", "--png", tmp_path / "FIG"]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FIG.png", "NAME.npz"]
    assert f"wrote {tmp_path / 'NAME.npz'} (" in out and f"wrote {tmp_path / 'FIG.png'} (" in out
