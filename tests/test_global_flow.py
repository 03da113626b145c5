"""Tests of the global flow prior beyond the shared contract (tests/test_contract.py)."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from conftest import synthetic_poses
from hypothesis import given, settings
from hypothesis import strategies as st

import poseprior
from poseprior import JointLayout, NotInitializedError
from poseprior.metrics import round_trip_error
from poseprior.nn.flows import ActNorm
from poseprior.priors.global_flow import GlobalFlowPrior

# broad_weight=0: these tests check the flow against references of the flow alone (the mixture
# with the broad component is tested for every prior in test_broad.py).
TINY = {"blocks": 2, "hidden_features": 16, "residual_blocks": 1, "broad_weight": 0.0}
TWO_JOINTS = JointLayout("two_joints", ("left_hip", "left_knee"), (-1, 0))


def _data(n: int, seed: int, dtype: torch.dtype, joints: int = 15) -> torch.Tensor:
    x = synthetic_poses(n, joints, torch.Generator().manual_seed(seed), dtype)
    x[:, 0, 2] = 0.25  # constant: an anatomical value (not learned by the flow)
    return x


@functools.cache
def _fitted(transform: str, dtype: torch.dtype) -> tuple[GlobalFlowPrior, torch.Tensor]:
    prior = GlobalFlowPrior("left_hand", transform=transform, **TINY).to(dtype)
    data = _data(600, 1, dtype)
    prior.fit(data, epochs=10, batch_size=100, generator=torch.Generator().manual_seed(2))
    return prior, data


def test_default_size_and_description() -> None:
    prior = GlobalFlowPrior("body", anatomical=list(range(22)))  # 41 learned values, as on the bundled data
    n = sum(p.numel() for p in prior.parameters())
    assert prior.dim == 63 and prior.model_dim == 41 and 130_000 < n < 160_000, n  # ~147K
    assert prior.requires_initialization and prior.has_exact_log_prob
    actnorms = [m for m in prior.modules() if isinstance(m, ActNorm)]
    assert len(actnorms) == prior.blocks == 3
    keys = prior.state_dict().keys()
    assert sum(k.endswith(".initialized") for k in keys) == 3 and "initialized" in keys  # ActNorms + prior
    assert {"loc", "whiten"} <= set(keys) and any(k.endswith("inverse_indices") for k in keys)


def test_everything_raises_before_initialize(dtype: torch.dtype) -> None:
    prior = GlobalFlowPrior("left_hand", **TINY).to(dtype)
    x = _data(10, 0, dtype)
    for call in (
        lambda: prior.log_prob(x),
        lambda: prior.sample(2),
        lambda: prior.sample_and_log_prob(2),
        lambda: prior.round_trip(x),
        lambda: prior.training_loss(x),
    ):
        with pytest.raises(NotInitializedError, match=r"call \.fit\(x\) or \.initialize\(x\) first"):
            call()
    prior.train()
    with pytest.raises(NotInitializedError):  # a training-mode call does not initialize either
        prior.log_prob(x)
    prior.initialize(x)
    assert torch.isfinite(prior.log_prob(x)).all()


def test_initialize_is_data_dependent_and_keeps_the_floor(dtype: torch.dtype) -> None:
    x = _data(400, 0, dtype)
    x[:, 3, 1] = 0.1 + 1e-4 * torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=dtype)
    # anatomical=[]: every value is learned, the near-constant ones too (the floor's own test).
    prior = GlobalFlowPrior("left_hand", min_std=0.02, noise_std=0.02, anatomical=[], **TINY).to(dtype)
    prior.initialize(x)
    v = prior._select(x)
    torch.testing.assert_close(prior.loc, v.mean(0))
    expected = (v.var(0, correction=0) + 0.02**2).rsqrt()
    torch.testing.assert_close(prior.whiten, torch.diag(expected))
    near_constant = 3 * 3 + 1  # flat index 10
    assert float(prior.whiten[near_constant, near_constant]) == pytest.approx(1 / 0.02, rel=1e-3)
    # The ActNorms are initialized on poses plus the training noise, so the first one leaves the
    # floored value alone instead of scaling its tiny clean spread back up to 1.
    first = prior.flow.transforms[0]
    assert abs(float(first.log_scale.detach()[near_constant])) < 0.2
    assert float(first.log_scale.detach().abs().max()) < 0.2


def test_full_standardization_whitens_with_floored_eigenvalues(gen: torch.Generator) -> None:
    x = _data(500, 0, torch.float64)
    x[:, 2, 1] = x[:, 2, 0]  # a direction of zero variance that is not along an axis
    prior = GlobalFlowPrior(
        "left_hand", standardize="full", noise_std=0.0, min_std=0.05, anatomical=[], **TINY
    ).double()
    prior.initialize(x)
    w = prior.whiten
    assert torch.equal(w, w.tril()) and bool((w.diagonal() > 0).all())
    cov = torch.linalg.inv(w.T @ w)  # the covariance the standardization whitens
    evals = torch.linalg.eigvalsh(cov)
    assert float(evals.min()) == pytest.approx(0.05**2, rel=1e-6)
    v = prior._select(x)
    sample_cov = torch.cov(v.T, correction=0)
    big = evals > 0.05**2 * 1.01
    assert big.sum() > 30  # only the small eigenvalues were raised to the floor
    torch.testing.assert_close(torch.linalg.eigvalsh(sample_cov)[big], evals[big])
    lp = prior.log_prob(x)
    assert torch.isfinite(lp).all()


@pytest.mark.parametrize("transform", ["maf", "coupling"])
def test_log_prob_matches_change_of_variables_with_autograd_jacobian(transform: str) -> None:
    prior, data = _fitted(transform, torch.float64)
    x = data[3]
    v = prior._select(x.unsqueeze(0))[0]

    def to_latent(values: torch.Tensor) -> torch.Tensor:
        return prior.flow(prior._whiten(values.unsqueeze(0)))[0][0]  # whitening included

    jac = torch.autograd.functional.jacobian(to_latent, v)
    z = to_latent(v)
    flow = (
        -0.5 * z.pow(2).sum() - 0.5 * prior.model_dim * math.log(2 * math.pi) + torch.linalg.slogdet(jac)[1]
    )
    anatomy = prior.anatomy.log_prob(x.reshape(1, -1))[0]  # the anatomical value's own Gaussian
    torch.testing.assert_close(prior.log_prob(x), flow + anatomy)


@pytest.mark.parametrize("transform", ["maf", "coupling"])
def test_round_trip_and_inverse_log_det(transform: str, dtype: torch.dtype) -> None:
    prior, data = _fitted(transform, dtype)
    assert round_trip_error(prior, data) < 1e-4
    x = data[:3].clone()
    x[:, 0, 2] = 9.0  # a value the flow does not learn is passed through, not replaced by its mean
    assert torch.equal(prior.round_trip(x)[:, 0, 2], x[:, 0, 2])
    z, ld = prior.flow(prior._whiten(prior._select(data)))
    _, ld_inv = prior.flow.inverse(z)
    torch.testing.assert_close(ld + ld_inv, torch.zeros_like(ld), atol=1e-4, rtol=0)


@pytest.mark.parametrize("transform", ["maf", "coupling"])
@pytest.mark.parametrize("sample_dtype", [torch.float32, torch.float64])
def test_sample_and_log_prob(transform: str, sample_dtype: torch.dtype) -> None:
    prior, _ = _fitted(transform, sample_dtype)
    state = torch.get_rng_state()
    x, lp = prior.sample_and_log_prob((4, 5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())
    assert x.shape == (4, 5, 15, 3) and lp.shape == (4, 5)
    assert x.dtype == lp.dtype == sample_dtype and not x.requires_grad
    tol = {"atol": 1e-3, "rtol": 1e-5} if sample_dtype == torch.float32 else {}
    torch.testing.assert_close(lp, prior.log_prob(x), **tol)
    again = prior.sample((4, 5), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, x)


def test_fit_with_a_generator_is_reproducible_and_leaves_global_rng_alone() -> None:
    a = GlobalFlowPrior("left_hand", **TINY).double()
    b = copy.deepcopy(a)
    data = _data(300, 1, torch.float64)
    state = torch.get_rng_state()
    for p in (a, b):
        p.fit(data, epochs=2, batch_size=100, generator=torch.Generator().manual_seed(4))
    assert torch.equal(state, torch.get_rng_state())
    torch.testing.assert_close(a.log_prob(data[:10]), b.log_prob(data[:10]), rtol=0, atol=0)


def test_training_noise_only_in_training_mode() -> None:
    prior, data = _fitted("maf", torch.float64)
    prior = copy.deepcopy(prior)
    prior.eval()
    # The flow's own objective: the density of the learned values (the anatomical ones are fixed).
    model = prior.log_prob(data) - prior.anatomy.log_prob(data.flatten(1))
    torch.testing.assert_close(prior.training_loss(data), -model.mean())
    prior.train()
    assert not torch.equal(prior.training_loss(data), prior.training_loss(data))


def _degenerate_data(n: int, gen: torch.Generator) -> torch.Tensor:
    """Two joints; the hip's x and y move together, so x - y is constant up to 0.001 rad."""
    x = 0.3 * torch.randn(n, 2, 3, generator=gen, dtype=torch.float64)
    x[:, 0, 1] = x[:, 0, 0] + 0.001 * torch.randn(n, generator=gen, dtype=torch.float64)
    return x


@pytest.mark.parametrize("noise_std", [0.02, 0.0])
def test_variance_floor_on_a_near_constant_direction(noise_std: float) -> None:
    gen = torch.Generator().manual_seed(0)
    data = _degenerate_data(3000, gen)
    # part_swap=0: the two joints are one limb, so a swap would only replace poses by others
    prior = GlobalFlowPrior(TWO_JOINTS, noise_std=noise_std, part_swap=0.0, **TINY).double()
    prior.fit(data, epochs=15, batch_size=100, lr=1e-2, generator=gen)
    x = data[:200]
    moved = x.clone()
    step = math.radians(2.0) / math.sqrt(2.0)  # 2 degrees along (1, -1) / sqrt(2)
    moved[:, 0, 0] += step
    moved[:, 0, 1] -= step
    with torch.no_grad():
        cost = float((prior.log_prob(x) - prior.log_prob(moved)).median())
    if noise_std > 0:
        # The flow learned the direction (a model that ignored it would cost ~0) and its spread is
        # the noise: about (0.035 / 0.02)^2 / 2 = 1.5 nats.
        assert 0.8 < cost < 4.0, cost
    else:
        assert cost > 20.0, cost  # without the noise the flow contracts the direction: the floor matters


@functools.cache
def _extreme_prior(dtype: torch.dtype) -> GlobalFlowPrior:
    data = _data(400, 1, dtype)
    data[:, 2, 1] = 0.05 + 1e-3 * data[:, 2, 0]  # near-constant, learned: scaled by 1 / min_std = 50
    prior = GlobalFlowPrior("left_hand", anatomical=[], **TINY).to(dtype)
    prior.fit(data, epochs=3, batch_size=100, generator=torch.Generator().manual_seed(0))
    return prior


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-50.0, 50.0, allow_nan=False, width=32), min_size=45, max_size=45),
    double=st.booleans(),
)
def test_extreme_poses_give_finite_log_prob_and_gradients(values: list[float], double: bool) -> None:
    dtype = torch.float64 if double else torch.float32
    prior = _extreme_prior(dtype)
    x = torch.tensor(values, dtype=dtype).reshape(1, 15, 3).requires_grad_(True)
    lp = prior.log_prob(x)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_std must be a finite number > 0"):
        GlobalFlowPrior("left_hand", min_std=0.0)
    with pytest.raises(ValueError, match="transform must be 'maf' or 'coupling'"):
        GlobalFlowPrior("left_hand", transform="spline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="coupling flow needs at least 2"):
        GlobalFlowPrior(JointLayout("j", ("left_knee",), (-1,)), transform="coupling", exclude=[1, 2])
    with pytest.raises(ValueError, match="groups must be an int >= 2"):
        GlobalFlowPrior("left_hand", groups=1)
    with pytest.raises(ValueError, match="conditioner_bound must be a finite number > 0"):
        GlobalFlowPrior("left_hand", conditioner_bound=0.0)


def test_registered_and_usable_on_the_full_pose() -> None:
    assert poseprior.prior_class("global_flow") is GlobalFlowPrior
    x = 0.2 * torch.randn(50, 52, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[:, 22:] = 0.0  # flat hands, never moved: excluded (fingers have no anatomical range)
    prior = poseprior.create("global_flow", layout="smplh", **TINY).double()
    prior.initialize(x)
    assert prior.dim == 66 and torch.isfinite(prior.log_prob(x)).all()


@pytest.mark.slow
def test_compiled_density_matches_eager() -> None:
    prior, data = _fitted("maf", torch.float64)
    prior = copy.deepcopy(prior)
    eager = prior.log_prob(data[:8])
    x = data[:8].clone().requires_grad_(True)
    assert prior.compile() is prior
    lp = prior.log_prob(x)
    torch.testing.assert_close(lp, eager)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(grad).all()
    # Frozen: the compiled fused density and pose gradient, still right after a weight update.
    prior.requires_grad_(False)
    for _ in range(2):
        lp = prior.log_prob(x)
        (g,) = torch.autograd.grad(lp.sum(), x)
        prior.requires_grad_(True)
        expected = _plain_log_prob(prior, x)
        torch.testing.assert_close(lp, expected)
        torch.testing.assert_close(g, torch.autograd.grad(expected.sum(), x)[0])
        prior.requires_grad_(False)
        with torch.no_grad():
            prior.flow.transforms[3].log_scale.add_(0.2)  # the second ActNorm
    prior.compile(enabled=False)
    assert prior._compiled is None and prior._compiled_fused is None
    # Compiling before the first fit survives the rebuild that fixes D.
    fresh = GlobalFlowPrior("left_hand", **TINY).double().compile()
    fresh.initialize(data)
    assert fresh._compiled is not None and fresh.dim == 45 and fresh.model_dim == 44
    compiled = fresh.log_prob(data[:8])
    torch.testing.assert_close(compiled, fresh.compile(enabled=False).log_prob(data[:8]))


def _plain_log_prob(prior: GlobalFlowPrior, x: torch.Tensor) -> torch.Tensor:
    """The module path (ActNorm -> MADE -> permutation, then the other parts), whatever the fused path
    would do."""
    return prior._plain_mixture(x)


@pytest.mark.parametrize("standardize", ["diagonal", "full"])
def test_frozen_prior_fused_path_equals_the_module_path(standardize: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    prior = GlobalFlowPrior(
        "left_hand", standardize=standardize, blocks=3, hidden_features=16, broad_weight=0.0
    ).to(dtype)
    data = _data(300, 0, dtype)
    prior.initialize(data)
    with torch.no_grad():  # perturb every weight so that no layer is the identity
        for p in prior.flow.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=dtype))
    tol = {} if dtype == torch.float64 else {"atol": 1e-4, "rtol": 1e-5}
    x = data[:7].clone().requires_grad_(True)
    expected = _plain_log_prob(prior, x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    prior.requires_grad_(False)
    lp = prior.log_prob(x)
    assert prior._fused() is not None and type(lp.grad_fn).__name__ == "_FusedLogProbBackward"
    (grad,) = torch.autograd.grad(lp.sum(), x)
    torch.testing.assert_close(lp, expected, **tol)
    torch.testing.assert_close(grad, expected_grad, **tol)
    floor = float(prior.spreads()[0, 2])  # the anatomical value: the gradient of its own Gaussian
    torch.testing.assert_close(grad[:, 0, 2], -(x[:, 0, 2] - 0.25).detach() / floor**2, **tol)
    with torch.no_grad():
        torch.testing.assert_close(prior.log_prob(data), _plain_log_prob(prior, data), **tol)
    # A weighted sum (not just .sum()) and a batch shape go through the same backward.
    xs = data[:6].reshape(2, 3, 15, 3).clone().requires_grad_(True)
    w = torch.arange(6, dtype=dtype).reshape(2, 3)
    (g,) = torch.autograd.grad((w * prior.log_prob(xs)).sum(), xs)
    prior.requires_grad_(True)
    (g_plain,) = torch.autograd.grad((w * prior.log_prob(xs)).sum(), xs)
    torch.testing.assert_close(g, g_plain, **tol)


def test_fused_path_follows_weight_updates_and_unfreezing() -> None:
    prior, data = _fitted("maf", torch.float64)
    prior = copy.deepcopy(prior)
    x = data[:5]
    prior.requires_grad_(False)
    before = prior.log_prob(x)
    fused = prior._fused()
    assert fused is not None and prior._fused() is fused  # cached while nothing changes
    with torch.no_grad():
        prior.flow.transforms[1].autoregressive_net.final_layer.weight.add_(0.1)  # an optimizer step
    assert prior._fused() is not fused
    after = prior.log_prob(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, _plain_log_prob(prior, x))
    state = copy.deepcopy(prior.state_dict())
    with torch.no_grad():
        prior.flow.transforms[0].loc.add_(0.3)  # an ActNorm, folded into the first matrix
        prior.loc.add_(0.1)  # the standardization buffer
    torch.testing.assert_close(prior.log_prob(x), _plain_log_prob(prior, x))
    prior.load_state_dict(state)
    torch.testing.assert_close(prior.log_prob(x), after)
    moved = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    prior.load_state_dict(moved, assign=True)  # new tensor objects
    prior.requires_grad_(False)
    torch.testing.assert_close(prior.log_prob(x), _plain_log_prob(prior, x))
    prior.float()  # a dtype change rebuilds it in float32
    x32 = x.float().requires_grad_(True)
    lp = prior.log_prob(x32)
    assert lp.dtype == torch.float32 and prior._fused().tensors[0].dtype == torch.float32
    torch.testing.assert_close(lp, _plain_log_prob(prior, x32), atol=1e-4, rtol=1e-5)
    # Unfrozen (training, or a gradient for the weights): the module path, with weight gradients.
    prior.requires_grad_(True)
    assert prior._fused() is None
    prior.log_prob(x32).sum().backward()
    assert prior.flow.transforms[1].autoregressive_net.final_layer.weight.grad is not None


def test_fused_path_keeps_higher_derivatives_and_torch_func() -> None:
    prior, data = _fitted("maf", torch.float64)
    prior = copy.deepcopy(prior)
    x = data[:3].clone().requires_grad_(True)

    def hvp() -> tuple[torch.Tensor, torch.Tensor]:
        (g,) = torch.autograd.grad(prior.log_prob(x).sum(), x, create_graph=True)
        return g.detach(), torch.autograd.grad(g.pow(2).sum(), x)[0]

    expected = hvp()
    expected_func = torch.func.grad(lambda y: prior.log_prob(y).sum())(data[:3])
    prior.requires_grad_(False)
    for got, want in zip(hvp(), expected, strict=False):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.func.grad(lambda y: prior.log_prob(y).sum())(data[:3]), expected_func)


def test_frozen_fused_path_includes_the_broad_component() -> None:
    # The mixture is computed inside the fused pass (one autograd node): same density, same
    # gradient as the module path mixed with the broad component, whichever component dominates.
    gen = torch.Generator().manual_seed(5)
    prior = GlobalFlowPrior("left_hand", blocks=3, hidden_features=16, broad_weight=0.3).double()
    data = _data(300, 0, torch.float64)
    prior.initialize(data)
    with torch.no_grad():
        for p in prior.flow.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.cat([data[:6], 3.0 * data[6:9]]).clone().requires_grad_(True)
    expected = prior._plain_mixture(x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    model, broad = prior._plain_density(x), prior.broad.log_prob(x.flatten(1))
    responsibility = torch.sigmoid(model + math.log(0.7) - broad - math.log(0.3))
    assert (responsibility > 0.05).any() and (responsibility < 0.05).any()  # both components matter
    prior.requires_grad_(False)
    lp = prior.log_prob(x)
    assert type(lp.grad_fn).__name__ == "_FusedLogProbBackward"
    (grad,) = torch.autograd.grad(lp.sum(), x)
    torch.testing.assert_close(lp, expected)
    torch.testing.assert_close(grad, expected_grad)
    with torch.no_grad():
        torch.testing.assert_close(prior.log_prob(x), expected)


def test_part_swap_trains_on_limbs_taken_from_other_poses() -> None:
    from poseprior.formats import swap_limbs

    with pytest.raises(ValueError, match=r"part_swap must be a probability in \[0, 1\], got 1.5"):
        GlobalFlowPrior("body", part_swap=1.5)
    x = synthetic_poses(256, 21, torch.Generator().manual_seed(0), torch.float64)
    prior = GlobalFlowPrior("body", part_swap=1.0, noise_std=0.0, **TINY).double()
    prior.initialize(x)
    prior.train()
    loss = prior.training_loss(x, torch.Generator().manual_seed(5))
    swapped = swap_limbs(x, "body", 1.0, torch.Generator().manual_seed(5))
    prior.eval()  # no augmentation in eval mode: the loss of the swapped poses themselves
    assert torch.allclose(loss, prior.training_loss(swapped), rtol=1e-12)
    assert not torch.allclose(loss, prior.training_loss(x), rtol=1e-6)
    assert GlobalFlowPrior("body", part_swap=0.5).get_config()["part_swap"] == 0.5
