"""``poseprior bench``: the naive per-joint reference in the speed figures, and the opt-in LOAO."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from poseprior import bench
from poseprior._reference import NaivePerJointFlow, matched_naive_flow, parameter_count
from poseprior.amass import load_split
from poseprior.cli import build_parser
from poseprior.data import sample_path
from poseprior.priors.joint_flow import JointFlowPrior

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
]


def test_loao_is_opt_in() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench"]).loao is False
    assert parser.parse_args(["bench", "--no-loao"]).loao is False  # still accepted
    assert parser.parse_args(["bench", "--loao"]).loao is True


def test_matched_naive_flow_keeps_the_global_rng() -> None:
    prior = JointFlowPrior("body")
    state = torch.random.get_rng_state()
    naive = matched_naive_flow(prior.layout.parents, parameter_count(prior))
    assert torch.equal(state, torch.random.get_rng_state())
    assert isinstance(naive, NaivePerJointFlow) and len(naive.flows) == len(prior.layout)
    # The closest width: one step either way is further from the prior's parameter count.
    gap = abs(parameter_count(naive) - parameter_count(prior))
    for h in (naive.hidden - 1, naive.hidden + 1):
        assert abs(parameter_count(NaivePerJointFlow(prior.layout.parents, h)) - parameter_count(prior)) >= gap
    x = 0.3 * torch.randn(5, 21, 3, generator=torch.Generator().manual_seed(0))
    assert naive.log_prob(x).shape == (5,) and bool(torch.isfinite(naive.log_prob(x)).all())
    assert naive.sample(4, generator=torch.Generator().manual_seed(0)).shape == (4, 21, 3)


def test_quick_bench_reports_the_naive_reference(tmp_path: Path) -> None:
    train = load_split(sample_path(), "train").select_files(["cmu_expmap_test_soccer_soccer_1.npz"])
    val = load_split(sample_path(), "val").select_files(["cmu_expmap_test_walking_walking_1.npz"])
    rows = bench.run([("gaussian", {"covariance": "diagonal"}), "joint_flow"], train, val, tmp_path, quick=True)
    saved = {r["prior"]: r["extra"] for r in json.loads((tmp_path / "bench.json").read_text())}
    assert set(saved) == {r.prior for r in rows} == {"gaussian(covariance=diagonal)", "joint_flow"}
    flow = saved["joint_flow"]
    for op in ("log_prob/s@1", "log_prob/s@64", "log_prob/s@4096", "sample/s"):
        for key in (op, f"ref_naive_{op}", f"ratio_naive_{op}", f"ref_mvn_{op}", f"ratio_{op}"):
            assert math.isfinite(flow[key]) and flow[key] > 0, (key, flow.get(key))
        assert flow[f"ratio_naive_{op}"] == pytest.approx(flow[op] / flow[f"ref_naive_{op}"])
    assert flow["naive_parameters"] > 0
    assert not any(k.startswith(("ref_naive_", "ratio_naive_")) for k in saved["gaussian(covariance=diagonal)"])
    assert "loao_mean" not in flow  # no leave-one-action-out without all_data
    md = (tmp_path / "bench.md").read_text()
    assert "naive per-joint loop" in md and "ratio_naive_log_prob/s@4096" in md
