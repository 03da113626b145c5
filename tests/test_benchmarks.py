"""The tools in ``benchmarks/`` that are not the library: the naive reference of the speed benchmark."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

from poseprior.priors.global_flow import GlobalFlowPrior
from poseprior.priors.joint_flow import JointFlowPrior

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(stem: str) -> ModuleType:
    """benchmarks/<stem>.py, loaded from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(stem, BENCHMARKS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_naive_reference_lives_in_benchmarks_not_in_the_library() -> None:
    import poseprior

    assert not (Path(poseprior.__file__).parent / "_reference.py").exists()
    env = dict(os.environ, PYTHONPATH=str(BENCHMARKS.parent))
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "speed_joint_flow.py"), "--help"],
        check=True, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert "--reps" in out.stdout  # the script finds benchmarks/_reference.py beside it


def test_matched_naive_flow_keeps_the_global_rng() -> None:
    ref = _load("_reference")
    prior = JointFlowPrior("body")
    state = torch.random.get_rng_state()
    naive = ref.matched_naive_flow(prior.layout.parents, ref.parameter_count(prior))
    assert torch.equal(state, torch.random.get_rng_state())
    assert isinstance(naive, ref.NaivePerJointFlow) and len(naive.flows) == len(prior.layout)
    # The closest width: one step either way is further from the prior's parameter count.
    gap = abs(ref.parameter_count(naive) - ref.parameter_count(prior))
    for h in (naive.hidden - 1, naive.hidden + 1):
        other = ref.NaivePerJointFlow(prior.layout.parents, h)
        assert abs(ref.parameter_count(other) - ref.parameter_count(prior)) >= gap
    x = 0.3 * torch.randn(5, 21, 3, generator=torch.Generator().manual_seed(0))
    assert naive.log_prob(x).shape == (5,) and bool(torch.isfinite(naive.log_prob(x)).all())
    assert naive.sample(4, generator=torch.Generator().manual_seed(0)).shape == (4, 21, 3)


def test_regularizer_diagnosis_runs_on_a_shipped_checkpoint(tmp_path: Path) -> None:
    # benchmarks/regularizer_variants.py imports completion.py beside it and fits three times.
    out = tmp_path / "diagnose.md"
    env = dict(os.environ, PYTHONPATH=str(BENCHMARKS.parent))
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "regularizer_variants.py"), "--diagnose", "gaussian.cmu",
         "--scenario", "right arm", "--frames", "6", "--threads", "1", "--out", str(out)],
        check=True, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    text = out.read_text()
    assert text.startswith("gaussian.cmu, hidden right arm, 6 unseen frames")
    objective, by_file = text.split("\n\n")[1:3]
    rows = [line.split(" | ") for line in objective.splitlines()][2:]  # after the head
    assert [r[0] for r in rows] == [
        "| its own solution", "| gaussian.cmu's solution", "| the true pose",
        "| its fit restarted from gaussian.cmu's",
    ]  # fmt: skip
    # The prior is the Gaussian itself: its solution and the reference coincide.
    assert rows[0][1] == rows[1][1] and rows[0][2].rstrip(" |") == "0.0"
    files = [line.split(" | ") for line in by_file.splitlines()][2:]
    assert sum(int(r[1]) for r in files) == 6  # every frame in its file's row
    assert all(r[3].rstrip(" |") in ("+0.0", "-0.0") for r in files)  # the Gaussian against itself


def test_tuning_rule_on_the_stored_global_flow_results() -> None:
    # benchmarks/tune_defaults.py's rule applied to docs/tune/global_flow.json. With tail estimates
    # from 200,000 samples the shipped defaults sit at the rule's 0.05% cap (0.052%, within two
    # standard errors of it) and the strict rule picks a setting with a worse score whose estimate
    # is just below it; docs/generalization.md says why the defaults are kept. This test pins that
    # state: it fails if the stored results or the defaults change without the docs.
    tune = _load("tune_defaults")
    stored = json.loads((BENCHMARKS.parent / "docs" / "tune" / "global_flow.json").read_text())
    results = tune.with_margins("global_flow", stored)
    row = tune.shipped("global_flow", results)
    prior = GlobalFlowPrior()
    assert all(getattr(prior, k) == v for k, v in results[row["variant"]]["kwargs"].items())
    assert (row["broad_weight"], row["broad_scale"]) == (prior.broad_weight, prior.broad_scale)
    assert results[row["variant"]]["pct_pi_samples"] == tune.PCT_PI_SAMPLES
    se = math.sqrt(tune.MAX_PCT_PI / 100 * (1 - tune.MAX_PCT_PI / 100) / tune.PCT_PI_SAMPLES) * 100
    assert tune.MAX_PCT_PI < row["pct_pi"] <= tune.MAX_PCT_PI + 2 * se  # at the cap, within its error
    assert row["pct_pi"] <= 0.1 and row["alone_beats_independent"] and row["margin"] >= tune.MIN_MARGIN
    chosen = tune.choose(results)
    assert chosen["variant"] == "noise=0.08,groups=8" and chosen["score"] > row["score"]
    assert chosen["unseen"] > row["unseen"] + 4  # 4.3 nats worse on the unseen subjects
    # Rows trained with another seed are repeats of a setting, never the choice (one scores better here).
    repeats = [r for r in tune.rows(results) if results[r["variant"]]["kwargs"].get("seed", 0) != 0]
    assert repeats and min(r["score"] for r in repeats) < chosen["score"]
    narrow = {k: v for k, v in results.items() if v["kwargs"].get("hidden_features") == 64}
    assert narrow and tune.choose(narrow) is None  # every row beyond the 0.05% tail cap
    assert "no setting of global_flow here meets the rule" in tune.render("global_flow", narrow)


def test_every_other_prior_ships_the_rules_choice() -> None:
    # The defaults of every tuned prior but global_flow (above) are the rule's choice on its stored
    # results in docs/tune, broad weight and scale included.
    tune = _load("tune_defaults")
    files = sorted((BENCHMARKS.parent / "docs" / "tune").glob("*.json"))
    assert {f.stem for f in files} >= {"gaussian", "gmm", "joint_flow", "vae", "global_flow"}
    for f in files:
        if f.stem == "global_flow":
            continue
        results = tune.with_margins(f.stem, json.loads(f.read_text()))
        chosen, shipped = tune.choose(results), tune.shipped(f.stem, results)
        assert shipped is not None and chosen is not None, f.stem
        assert (shipped["variant"], shipped["key"]) == (chosen["variant"], chosen["key"]), f.stem


def test_conditional_completion_against_a_gaussian_in_closed_form() -> None:
    # benchmarks/conditional_completion.py's free rotations, conditional mode and importance-sampled
    # conditional mean, checked on a correlated Gaussian whose conditionals are known exactly.
    sys.path.insert(0, str(BENCHMARKS))
    try:
        cc = _load("conditional_completion")
    finally:
        sys.path.remove(str(BENCHMARKS))
    left_leg = cc.free_values({"left_hip", "left_knee", "left_ankle", "left_foot"})
    assert left_leg == [0, 1, 2, 9, 10, 11, 18, 19, 20]  # left hip, knee, ankle: not the foot (a leaf)
    right_arm = cc.free_values({"right_shoulder", "right_elbow", "right_wrist"})
    assert right_arm == [39, 40, 41, 48, 49, 50, 54, 55, 56]  # right collar, shoulder, elbow

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(63, 63, generator=gen, dtype=torch.float64) / 8
    cov = a @ a.T + 0.05 * torch.eye(63, dtype=torch.float64)
    mean = torch.randn(63, generator=gen, dtype=torch.float64) / 4
    mvn = torch.distributions.MultivariateNormal(mean, cov)
    gain, cond = cc.linear_conditional(mean, cov, left_leg)
    x = mvn.sample((3,))
    exact = mean[left_leg] + (x - mean) @ gain.T  # (3, F)
    assert torch.allclose(gain[:, left_leg], torch.zeros(9, 9, dtype=torch.float64))

    mode = cc.conditional_mode(mvn.log_prob, x, left_leg, torch.zeros(3, 9, dtype=torch.float64))
    assert torch.allclose(mode[:, left_leg], exact, atol=1e-5)
    others = [i for i in range(63) if i not in left_leg]
    assert torch.equal(mode[:, others], x[:, others])

    # Started half a standard deviation off with a too-wide proposal, the adaptive rounds still
    # find the mean, to a tenth of a standard deviation (about 3 standard errors at this ESS).
    tril, std = torch.linalg.cholesky(4.0 * cond), cond.diagonal().sqrt()
    for i in range(3):
        est, ess = cc.conditional_mean(
            mvn.log_prob, x[i], left_leg, exact[i] + 0.5 * std, tril, lambda v: v[:, left_leg],
            samples=4096, rounds=4, generator=gen,
        )  # fmt: skip
        assert ess > 1000
        assert ((est - exact[i]).abs() < 0.1 * std).all()
