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
        for key in ("reg_step_ms@1", "ref_mvn_reg_step_ms@1", "ratio_reg_step_ms@1"):
            assert math.isfinite(extra[key]) and extra[key] > 0, (key, extra.get(key))
        assert not any(k.startswith(("reg_steps", "ref_mvn_reg_steps", "ratio_reg_steps")) for k in extra)
        # The naive per-joint loop is benchmarks/speed_joint_flow.py's, not the library's.
        assert not any("naive" in k for k in extra)
        assert "loao_mean" not in extra  # no leave-one-action-out without all_data
    md = (tmp_path / "bench.md").read_text()
    assert "ratio_log_prob/s@4096" in md and "naive" not in md


class _Clock:
    """A fake ``time.perf_counter``: time moves only when a timed function says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_paired_timing_keeps_the_ratio_under_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine that gets 0.2% slower with every call: the prior's call costs twice the reference's at
    # any moment, so the true ratio of rates is 0.5, while each one's median rate drifts.
    clock, calls = _Clock(), [0]
    monkeypatch.setattr(bench.time, "perf_counter", clock)

    def work(cost: float) -> None:
        calls[0] += 1
        clock.now += cost * (1.0 + 0.002 * calls[0])

    rate, ref_rate, ratio = bench._paired(lambda: work(2.0), lambda: work(1.0), n=1, seconds=90.0, rounds=9)
    assert ratio == pytest.approx(0.5, rel=0.02)
    # Timed back to back (all the prior's rounds, then all the reference's), the drift enters
    # the ratio: what _paired avoids.
    calls[0] = 0
    alone = bench._rate(lambda: work(2.0), 1, 10.0, repeats=9)
    assert alone / bench._rate(lambda: work(1.0), 1, 10.0, repeats=9) > 0.55
    assert rate / ref_rate == pytest.approx(0.5, rel=0.02)


def test_sample_quality_counts_values_beyond_pi_in_a_larger_draw_of_their_own() -> None:
    import torch

    import poseprior

    gen = torch.Generator().manual_seed(0)
    wide = 1.6 * torch.randn(400, 21, 3, generator=gen, dtype=torch.float64)  # many values beyond pi
    prior = poseprior.create("gaussian", covariance="diagonal", broad_weight=0.0).double().fit(wide)
    sizes: list[int] = []
    draw = prior.sample

    def spy(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        sizes.append(n)
        return draw(n, generator=generator)

    prior.sample = spy  # type: ignore[method-assign]
    out = bench.sample_quality(prior, wide, wide[:200], n=60, seed=3, n_tail=900)
    assert sizes == [60, 900]  # the quality metrics' draw, then the tails' own
    tail = draw(900, generator=torch.Generator().manual_seed(4))
    expected = 100.0 * float((tail.reshape(900, -1).abs().amax(-1) > math.pi).double().mean())
    assert 0 < out["pct_beyond_pi"] == pytest.approx(expected)
