"""Known-answer and property tests of the per-joint conditional flow prior (joint_flow)."""

from __future__ import annotations

import math

import pytest
import torch
from contract import anatomical_log_prob, synthetic_poses
from hypothesis import given, settings
from hypothesis import strategies as st

import poseprior
from poseprior.formats.rotations import axis_angle_to_rot6d
from poseprior.nn.joint_net import StackedMLP, identity_spline_params, rq_spline
from poseprior.priors.joint_flow import JointFlowPrior

# broad_weight=0: these tests check the flow against references of the flow alone (the mixture
# with the broad component is tested for every prior in test_broad.py).
TINY = {"num_bins": 5, "hidden": 12, "layers": 2, "broad_weight": 0.0}


def _randomize(prior: JointFlowPrior, seed: int = 0, scale: float = 0.5) -> JointFlowPrior:
    """Random conditioner weights (the last layer starts at zero, which hides the conditioning)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in prior.net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return prior


def _prior(
    layout: str = "body", dtype: torch.dtype = torch.float64, seed: int = 0, **kwargs: object
) -> tuple[JointFlowPrior, torch.Tensor]:
    """A prior initialized on synthetic poses (standardization, anatomical values), random weights,
    and those poses."""
    prior = JointFlowPrior(layout, **dict(TINY, **kwargs)).to(dtype)
    x = synthetic_poses(300, len(prior.layout), torch.Generator().manual_seed(seed), dtype)
    prior.initialize(x)
    return _randomize(prior, seed), x


def _children(prior: JointFlowPrior, j: int) -> set[int]:
    return {c for c, p in enumerate(prior.layout.parents) if p == j}


# ---------------------------------------------------------------------------------------- spline
@pytest.mark.parametrize("dim", [-1, -2])
def test_spline_matches_nflows(dim: int, gen: torch.Generator) -> None:
    from nflows.transforms.splines.rational_quadratic import unconstrained_rational_quadratic_spline

    k, bound = 6, 3.0
    params = torch.randn(400, 3 * k - 1, generator=gen, dtype=torch.float64)
    x = 4.0 * torch.randn(400, generator=gen, dtype=torch.float64)  # about a third outside [-B, B]
    ref_y, ref_ld = unconstrained_rational_quadratic_spline(
        x, params[:, :k], params[:, k : 2 * k], params[:, 2 * k :], tails="linear", tail_bound=bound
    )
    # dim=-2: the same values laid out as (M, 3K - 1, N).
    p = params if dim == -1 else params.T.reshape(1, 3 * k - 1, 400)
    xi = x if dim == -1 else x.reshape(1, 400)
    y, ld = rq_spline(xi, p, tail_bound=bound, dim=dim)
    torch.testing.assert_close(y.reshape(-1), ref_y)
    torch.testing.assert_close(ld.reshape(-1), ref_ld)
    back, ld_inv = rq_spline(y, p, tail_bound=bound, inverse=True, dim=dim)
    torch.testing.assert_close(back.reshape(-1), x)
    torch.testing.assert_close(ld_inv, -ld)


def test_spline_log_det_is_the_derivative(gen: torch.Generator) -> None:
    params = torch.randn(50, 17, generator=gen, dtype=torch.float64)
    x = torch.linspace(-6.0, 6.0, 50, dtype=torch.float64).requires_grad_(True)
    y, ld = rq_spline(x, params, tail_bound=5.0)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(ld, grad.log())
    assert torch.equal(y[x.abs() > 5.0], x[x.abs() > 5.0]), "the tails are the identity"


def test_identity_initialization() -> None:
    params = identity_spline_params(8).expand(30, -1)
    x = torch.linspace(-7.0, 7.0, 30, dtype=torch.float64)
    y, ld = rq_spline(x, params, tail_bound=5.0)
    torch.testing.assert_close(y, x)
    torch.testing.assert_close(ld, torch.zeros_like(ld))


def test_stacked_mlp_equals_separate_networks(gen: torch.Generator) -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    net = StackedMLP(4, 3, 7, 2, 5, input_mask=mask).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(4, 3, 10, generator=gen, dtype=torch.float64)
    out = net(x)
    for m in range(4):
        h = x[m].T * mask[m]  # (N, 3): masked inputs of network m
        for i, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
            h = h @ w[m].T + b[m, :, 0]
            h = torch.nn.functional.silu(h) if i < 2 else h
        torch.testing.assert_close(out[m].T, h)
    idx = torch.tensor([2, 0])
    torch.testing.assert_close(net(x[idx], idx), out[idx])


# ---------------------------------------------------------------------------------------- density
def _reference_log_prob(prior: JointFlowPrior, x: torch.Tensor) -> torch.Tensor:
    """The flow's log p written value by value: one network call and one nflows spline per learned value."""
    from nflows.transforms.splines.rational_quadratic import unconstrained_rational_quadratic_spline

    k, j_count = prior.num_bins, len(prior.layout)
    const = prior.data_mean.reshape(j_count, 3)
    x = torch.where(prior.learned_mask, x, const)  # excluded and anatomical values: at their means
    u = (x - prior.loc) / prior.scale
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    values = [(j, a) for j in range(j_count) for a in range(3) if prior.learned_mask[j, a]]
    for m, (j, a) in enumerate(values):
        parent = prior.layout.parents[j]
        if parent >= 0:  # the parent's 6D rotation, standardized with the data's statistics
            ctx = axis_angle_to_rot6d(x[:, parent]) - prior.ctx_loc[parent, :, 0]
            ctx = (ctx / prior.ctx_scale[parent, :, 0]).clamp(-prior.tail_bound, prior.tail_bound)
        else:
            ctx = x.new_zeros(x.shape[0], 6)
        own = u[:, j].clamp(-prior.tail_bound, prior.tail_bound).clone()
        own[:, a:] = 0.0  # only the axes before a ...
        own[:, ~prior.learned_mask[j]] = 0.0  # ... that are learned
        inp = torch.cat([ctx, own], dim=1).T.unsqueeze(0)  # (1, 9, N)
        p = prior.net(inp, torch.tensor([m]))[0].T  # (N, 3K - 1)
        z, ld = unconstrained_rational_quadratic_spline(
            u[:, j, a], p[:, :k], p[:, k : 2 * k], p[:, 2 * k :], tails="linear", tail_bound=prior.tail_bound
        )
        total += -0.5 * z**2 - 0.5 * math.log(2 * math.pi) + ld - prior.scale[j, a].log()
    return total


@pytest.mark.parametrize("layout", ["body", "left_hand"])
def test_log_prob_matches_value_by_value_reference(layout: str) -> None:
    # Excluded and anatomical values, some before learned axes of their joint.
    prior, x = _prior(layout, exclude=[1, 5, 9], anatomical=[3, 10])
    assert prior.dim == 3 * len(prior.layout) - 3 and prior.model_dim == prior.dim - 2
    expected = _reference_log_prob(prior, x[:40]) + anatomical_log_prob(prior, x, x[:40])
    torch.testing.assert_close(prior.log_prob(x[:40]), expected)


def test_log_prob_is_the_sum_of_the_per_joint_terms() -> None:
    prior, x = _prior("body", anatomical=[3, 10])
    per_joint = prior.log_prob_per_joint(x[:30].reshape(5, 6, 21, 3))
    assert per_joint.shape == (5, 6, 21)
    # They sum to the flow's density; log_prob adds the anatomical values' Gaussians.
    anat = anatomical_log_prob(prior, x, x[:30])
    torch.testing.assert_close(per_joint.sum(-1), (prior.log_prob(x[:30]) - anat).reshape(5, 6))


@pytest.mark.parametrize("layout", ["body", "left_hand"])
def test_a_joint_only_affects_its_own_and_its_childrens_terms(layout: str, gen: torch.Generator) -> None:
    prior, x = _prior(layout)
    before = prior.log_prob_per_joint(x[:20])
    for j in range(len(prior.layout)):
        moved = x[:20].clone()
        moved[:, j] += 0.3 * torch.randn(20, 3, generator=gen, dtype=x.dtype)
        changed = (prior.log_prob_per_joint(moved) - before).abs().amax(0) > 1e-9
        expected = {j} | _children(prior, j)
        assert set(changed.nonzero().flatten().tolist()) == expected, prior.layout.joints[j]


def test_left_hand_layout_follows_the_finger_chains() -> None:
    prior, x = _prior("left_hand")
    names = prior.layout.joints
    # index1 -> index2 -> index3; index1's parent (the wrist) is outside the layout.
    i1, i2, i3 = (names.index(f"left_index{k}") for k in (1, 2, 3))
    assert prior.layout.parents[i1] == -1 and prior.layout.parents[i2] == i1
    no_parent = len(prior.layout)
    assert (prior.value_parent[prior.value_joint == i1] == no_parent).all()
    assert (prior.value_parent[prior.value_joint == i2] == i1).all()
    assert (prior.value_parent[prior.value_joint == i3] == i2).all()
    # The sampler makes 3 depths x 3 axes passes, each over the 5 fingers' joints of that depth.
    assert [stop - start for start, stop in prior._groups] == [5] * 9
    # The context of index2 is index1's rotation: rotating index1 changes index2's term only.
    moved = x[:5].clone()
    moved[:, i1] += 0.5
    diff = (prior.log_prob_per_joint(moved) - prior.log_prob_per_joint(x[:5])).abs().amax(0)
    assert diff[i2] > 1e-6 and diff[i3] == 0.0


def test_excluded_values_do_not_enter_the_density(gen: torch.Generator) -> None:
    x = synthetic_poses(300, 21, gen)
    knee = poseprior.get_layout("body").index("left_knee")
    x[:, knee, 1:] = 0.1  # the knee's y and z are constant; the knee is a parent (ankle)
    prior = JointFlowPrior("body", **TINY, exclude=[3 * knee + 1, 3 * knee + 2]).double()
    prior.fit(x, epochs=1, generator=gen)
    assert prior.dim == 61 and set(prior.excluded_names()) == {"left_knee.y", "left_knee.z"}
    _randomize(prior)
    moved = x[:10].clone()
    moved[:, knee, 1:] = 2.0
    torch.testing.assert_close(prior.log_prob(moved), prior.log_prob(x[:10]))


def test_constant_values_of_a_body_joint_are_anatomical(gen: torch.Generator) -> None:
    # By default the frozen knee values are anatomical: in the density with the knee's floor
    # (5 degrees), and held at their mean in the flow's conditioners (the ankle's context).
    x = synthetic_poses(300, 21, gen)
    knee = poseprior.get_layout("body").index("left_knee")
    x[:, knee, 1:] = 0.1
    prior = JointFlowPrior("body", **TINY).double()
    prior.fit(x, epochs=1, generator=gen, mirror=False)  # (mirrored, the right knee's motion would move it)
    assert {"left_knee.y", "left_knee.z"} <= set(prior.anatomical_names()) and prior.excluded_names() == []
    assert prior.dim == 63
    _randomize(prior)
    moved = x[:10].clone()
    moved[:, knee, 1:] = 0.3
    floor = math.radians(5.0)
    cost = prior.log_prob(x[:10]) - prior.log_prob(moved)
    torch.testing.assert_close(cost, torch.full_like(cost, (0.2 / floor) ** 2))  # 2 values, 0.5 (0.2/floor)^2
    torch.testing.assert_close(prior._log_prob(moved), prior._log_prob(x[:10]))


def test_default_size_and_other_layouts() -> None:
    body = JointFlowPrior()
    assert body.layout.name == "body" and body.dim == 63
    assert abs(sum(p.numel() for p in body.parameters()) - 517_000) < 5_000
    full = JointFlowPrior("smplx", **TINY)
    x = 0.2 * torch.randn(4, 55, 3, generator=torch.Generator().manual_seed(0))
    assert full.log_prob(x).shape == (4,) and full.sample(3, generator=torch.Generator()).shape == (3, 55, 3)
    assert poseprior.create("joint_flow", layout="right_hand", **TINY).dim == 45


# ---------------------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_agree(dtype: torch.dtype) -> None:
    prior, x = _prior("body", torch.float64)
    ref = prior.log_prob(x[:20])
    lp = prior.to(dtype).log_prob(x[:20].to(dtype))
    assert lp.dtype == dtype
    torch.testing.assert_close(lp.double(), ref, rtol=1e-4, atol=1e-3)


_PRIORS: dict[torch.dtype, JointFlowPrior] = {}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(-50.0, 50.0), st.sampled_from([0.0, 50.0, -50.0, math.pi, 1e-8])),
        min_size=45,
        max_size=45,
    )
)
def test_finite_log_prob_and_gradients_for_extreme_poses(dtype: torch.dtype, values: list[float]) -> None:
    if dtype not in _PRIORS:
        _PRIORS[dtype] = _prior("left_hand", dtype)[0]
    prior = _PRIORS[dtype]
    x = torch.tensor(values, dtype=dtype).reshape(1, 15, 3).requires_grad_(True)
    lp = prior.log_prob(x)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(grad).all()
    prior.zero_grad()
    lp = prior.log_prob(x.detach())
    lp.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in prior.parameters())


def test_far_poses_cost_more_than_typical_ones() -> None:
    prior, x = _prior("body")
    assert (prior.log_prob(50.0 * torch.ones(1, 21, 3, dtype=x.dtype)) < prior.log_prob(x).min()).all()


# ---------------------------------------------------------------------------------------- sampling
def _sample_value_by_value(prior: JointFlowPrior, z: torch.Tensor) -> torch.Tensor:
    """Ancestral sampling one learned value at a time (flat order: parents, then axes)."""
    n, j_count = z.shape[0], len(prior.layout)
    x = prior.data_mean.expand(n, -1).clone()
    for m in range(prior.model_dim):
        params = prior.spline_params(x.reshape(n, j_count, 3))[m].T  # (N, 3K - 1)
        u, _ = rq_spline(z[:, m], params, tail_bound=prior.tail_bound, inverse=True)
        flat = int(prior.value_flat[m])
        x[:, flat] = prior.loc.reshape(-1)[flat] + prior.scale.reshape(-1)[flat] * u
    return x.reshape(n, j_count, 3)


@pytest.mark.parametrize("layout", ["body", "left_hand"])
def test_sampling_by_depth_equals_sampling_value_by_value(layout: str) -> None:
    prior, _ = _prior(layout, exclude=[0, 7], anatomical=[4])
    z = torch.randn(50, prior.model_dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    by_depth, _ = prior._inverse(z)
    torch.testing.assert_close(by_depth, _sample_value_by_value(prior, z))
    # sample() draws exactly these base values from the generator (then the anatomical value).
    s = prior.sample(50, generator=torch.Generator().manual_seed(4))
    learned, anatomical = prior.learned_mask, prior.anatomical_mask
    torch.testing.assert_close(s[:, ~anatomical], by_depth[:, ~anatomical])
    assert (s[:, anatomical] != by_depth[:, anatomical]).all()  # drawn, not left at the mean
    assert not learned.flatten()[[0, 4, 7]].any()


def test_sampling_in_chunks_and_log_prob_consistency() -> None:
    prior, _ = _prior("body")
    prior.chunk_size = 16  # several chunks
    x, lp = prior.sample_and_log_prob((3, 20), generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 20, 21, 3) and lp.shape == (3, 20)
    torch.testing.assert_close(lp, prior.log_prob(x))
    prior.chunk_size = 10_000
    x2, lp2 = prior.sample_and_log_prob((3, 20), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x2, x)
    torch.testing.assert_close(prior.log_prob(x), lp)


# ---------------------------------------------------------------------------------------- fit
def test_fit_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    x = synthetic_poses(400, 15, torch.Generator().manual_seed(0))
    priors = []
    for _ in range(2):
        torch.manual_seed(0)  # the test, not the library, fixes the initial weights
        prior = JointFlowPrior("left_hand", **TINY).double()
        state = torch.get_rng_state()
        prior.fit(x, epochs=2, generator=torch.Generator().manual_seed(1))
        assert torch.equal(state, torch.get_rng_state()), "fit with a generator used the global RNG"
        priors.append(prior)
    for a, b in zip(priors[0].parameters(), priors[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_fit_standardizes_once_and_stops_early_on_validation_data() -> None:
    gen = torch.Generator().manual_seed(0)
    x = synthetic_poses(600, 15, gen)
    prior = JointFlowPrior("left_hand", **TINY).double()
    prior.fit(x[:500], val=x[500:], epochs=200, patience=2, lr=2e-2, generator=gen)
    history = prior.fit_history_
    assert "val_loss" in history[-1] and len(history) < 200
    torch.testing.assert_close(prior.loc, x[:500].mean(0))
    torch.testing.assert_close(prior.ctx_loc[:-1, :, 0], axis_angle_to_rot6d(x[:500]).mean(0))
    loc = prior.loc.clone()
    prior.fit(x[:100] + 1.0, epochs=1, generator=gen)  # fine-tuning keeps the standardization
    assert torch.equal(prior.loc, loc)


def test_variance_floor_on_a_near_constant_value() -> None:
    gen = torch.Generator().manual_seed(0)
    x = synthetic_poses(3000, 15, gen)
    x[:, 4, 1] = 0.1 + 0.001 * torch.randn(3000, generator=gen, dtype=x.dtype)  # std 0.001 rad
    off = x[:200].clone()
    off[:, 4, 1] += math.radians(2.0)
    # Learned (anatomical=[]): the flow's own floor (scale and training noise at min_std).
    prior = JointFlowPrior("left_hand", **TINY, min_std=0.02, anatomical=[]).double()
    prior.fit(x, epochs=15, lr=5e-3, generator=gen)
    assert prior.scale[4, 1] == pytest.approx(0.02)
    cost = (prior.log_prob(x[:200]) - prior.log_prob(off)).mean()
    assert 0.5 < cost < 5.0, cost  # a Gaussian of std 0.02 gives 1.5 nats; no needle
    # By default the value moves less than its floor (3 degrees for a finger): anatomical, and
    # 2 degrees cost exactly its Gaussian's share, about 0.5 (2/3)^2 nats.
    default = JointFlowPrior("left_hand", **TINY, min_std=0.02).double()
    default.initialize(x)
    assert default.anatomical_names() == [f"{default.layout.joints[4]}.y"]
    assert default.scale[4, 1] == 1.0  # not standardized: the flow does not see it
    with torch.no_grad():
        cost = default.log_prob(x[:200]) - default.log_prob(off)
    expected = anatomical_log_prob(default, x, x[:200]) - anatomical_log_prob(default, x, off)
    torch.testing.assert_close(cost, expected)
    assert 0.1 < float(cost.mean()) < 0.4


def test_initial_weights_come_from_the_seed_not_the_global_rng() -> None:
    state = torch.get_rng_state()
    a, b = JointFlowPrior("left_hand", **TINY), JointFlowPrior("left_hand", **TINY)
    c = JointFlowPrior("left_hand", seed=1, **TINY)
    assert torch.equal(state, torch.get_rng_state())
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # The hidden layers are random (the last layer starts at the identity spline for any seed).
    hidden = lambda p: [*p.net.weights[:-1], *p.net.biases[:-1]]  # noqa: E731
    assert all(not torch.equal(pa, pc) for pa, pc in zip(hidden(a), hidden(c), strict=True))
