"""Issue 19: every real degree of freedom of the body gets a density, fitted on the shipped data.

Knee twist, elbow off-hinge rotation and collar motion are constant or nearly so in the bundled CMU
data; every body prior must still make them cost what anatomy says. The checks are functions, so
``tests/test_pretrained.py`` runs them on the shipped checkpoints too.
"""

from __future__ import annotations

import math

import pytest
import torch
from contract import TINY_CONFIGS

import poseprior
from poseprior.data import load_bundled
from poseprior.formats.layouts import get_layout

BODY = get_layout("body")
KNEE_ANGLES_DEG = (2, 5, 10, 20, 30, 45)


def _index(joint: str) -> int:
    return BODY.joints.index(joint)


def cost(prior: poseprior.PosePrior, poses: torch.Tensor, moves: list[tuple[str, int, float]]) -> float:
    """Mean over ``poses`` of ``log p(x) - log p(x moved)``, each move adding ``radians`` to one value."""
    moved = poses.clone()
    for joint, axis, radians in moves:
        moved[:, _index(joint), axis] += radians
    with torch.no_grad():
        return float((prior.log_prob(poses) - prior.log_prob(moved)).mean())


def assert_anatomical_costs(prior: poseprior.PosePrior, poses: torch.Tensor) -> None:
    """Issue 19's costs: knees off the hinge, elbows off their hinge axis, collars, and the gradient."""
    assert prior.dim == 63
    knees = ("left_knee", "right_knee")
    for axis in (1, 2):  # twist (y) and ab/adduction (z) of both knees
        costs = [cost(prior, poses, [(k, axis, math.radians(a)) for k in knees]) for a in KNEE_ANGLES_DEG]
        assert costs[0] < 3.0, (axis, costs)
        assert costs[-1] > 20.0, (axis, costs)
        assert all(a < b for a, b in zip(costs, costs[1:], strict=False)), (axis, costs)
    for elbow in ("left_elbow", "right_elbow"):
        for axis in (0, 2):  # the two axes off the elbow's hinge (y)
            assert cost(prior, poses, [(elbow, axis, 0.5)]) < 10.0, (elbow, axis)
            assert cost(prior, poses, [(elbow, axis, 2.0)]) > 20.0, (elbow, axis)
    for sign in (1.0, -1.0):
        for axis in range(3):
            assert cost(prior, poses, [(c, axis, sign * 0.3) for c in ("left_collar", "right_collar")]) < 10.0
        all_six = [(c, axis, sign * 0.3) for c in ("left_collar", "right_collar") for axis in range(3)]
        assert cost(prior, poses, all_six) < 10.0
    twisted = poses[:8].clone()
    twisted[:, _index("left_knee"), 1] += 0.3
    twisted.requires_grad_(True)
    prior.penalty(twisted).sum().backward()
    assert bool((twisted.grad[:, _index("left_knee"), 1] > 0).all())  # descent turns the knee back


BODY_PRIORS = [n for n in sorted(TINY_CONFIGS) if poseprior.prior_class(n).default_layout == "body"]


@pytest.fixture(scope="module")
def shipped() -> tuple[torch.Tensor, torch.Tensor]:
    """Every 10th frame of the bundled training data, and 100 evenly spaced val poses."""
    train = load_bundled("train").poses_for("body")[::10].double()
    val = load_bundled("val").poses_for("body").double()
    return train, val[torch.linspace(0, len(val) - 1, 100).long()]


@pytest.mark.parametrize("name", BODY_PRIORS)
def test_every_real_degree_of_freedom_costs_what_anatomy_says(name: str, shipped) -> None:
    train, val = shipped
    kwargs, fit_opts = TINY_CONFIGS[name]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = poseprior.create(name, **{**kwargs, "layout": "body"}).double()
    prior.fit(
        train, generator=torch.Generator().manual_seed(0), **{**fit_opts, "epochs": 2} if fit_opts else {}
    )
    assert {"left_knee.y", "left_elbow.x", "left_collar.z"} <= set(prior.anatomical_names())
    assert_anatomical_costs(prior, val)


def test_the_floors_follow_the_ranges() -> None:
    from poseprior.formats.ranges import BODY_RANGES_DEG, DEFAULT_FLOOR_DEG, MINOR_DOFS, value_floors

    floors = torch.rad2deg(value_floors("body"))
    for j, name in enumerate(BODY.joints):
        for axis in range(3):
            lo, hi = BODY_RANGES_DEG[name][axis]
            expected = (hi - lo) / 4 if (name, axis) in MINOR_DOFS else DEFAULT_FLOOR_DEG
            assert float(floors[j, axis]) == pytest.approx(expected)
    assert float(torch.rad2deg(value_floors("left_hand")).max()) == pytest.approx(DEFAULT_FLOOR_DEG)
    # The spread of a value the data froze: a quarter of its range for every body value (the same
    # as the floor for the minor degrees of freedom), the default elsewhere.
    from poseprior.formats.ranges import value_spreads

    spreads = torch.rad2deg(value_spreads("body"))
    for j, name in enumerate(BODY.joints):
        for axis in range(3):
            lo, hi = BODY_RANGES_DEG[name][axis]
            assert float(spreads[j, axis]) == pytest.approx((hi - lo) / 4)
    assert bool((spreads >= floors - 1e-9).all())
    assert float(torch.rad2deg(value_spreads("left_hand")).max()) == pytest.approx(DEFAULT_FLOOR_DEG)


def test_d_is_the_same_whatever_the_training_data(shipped) -> None:
    train, _ = shipped
    a = poseprior.create("gaussian").fit(train)
    b = poseprior.create("gaussian").fit(load_bundled("val").poses_for("body"))  # another source, less motion
    assert a.dim == b.dim == 63
