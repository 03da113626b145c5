"""``poseprior bench``: the reference in the speed figures, and the opt-in LOAO."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from poseprior import bench
from poseprior.amass import load_split
from poseprior.cli import build_parser
from poseprior.data import sample_path

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
]


def test_loao_is_opt_in() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench"]).loao is False
    assert parser.parse_args(["bench", "--no-loao"]).loao is False  # still accepted
    assert parser.parse_args(["bench", "--loao"]).loao is True


def test_quick_bench_reports_the_mvn_reference_and_no_naive_columns(tmp_path: Path) -> None:
    train = load_split(sample_path(), "train").select_files(["cmu_expmap_test_soccer_soccer_1.npz"])
    val = load_split(sample_path(), "val").select_files(["cmu_expmap_test_walking_walking_1.npz"])
    specs = [("gaussian", {"covariance": "diagonal"}), "joint_flow"]
    rows = bench.run(specs, train, val, tmp_path, quick=True)
    saved = {r["prior"]: r["extra"] for r in json.loads((tmp_path / "bench.json").read_text())}
    assert set(saved) == {r.prior for r in rows} == {"gaussian(covariance=diagonal)", "joint_flow"}
    for extra in saved.values():
        for op in ("log_prob/s@1", "log_prob/s@64", "log_prob/s@4096", "sample/s"):
            for key in (op, f"ref_mvn_{op}", f"ratio_{op}"):
                assert math.isfinite(extra[key]) and extra[key] > 0, (key, extra.get(key))
            assert extra[f"ratio_{op}"] == pytest.approx(extra[op] / extra[f"ref_mvn_{op}"])
        # The naive per-joint loop is benchmarks/speed_joint_flow.py's, not the library's.
        assert not any("naive" in k for k in extra)
        assert "loao_mean" not in extra  # no leave-one-action-out without all_data
    md = (tmp_path / "bench.md").read_text()
    assert "ratio_log_prob/s@4096" in md and "naive" not in md
