"""Unit tests of the flow building blocks in poseprior.nn.flows (nflows TransformTest style)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from poseprior import NotInitializedError
from poseprior.nn.flows import (
    ActNorm,
    BoundedAffineCoupling,
    BoundedMaskedAffineAutoregressive,
    FixedPermutation,
    build_flow,
    soft_clamp,
)
from poseprior.nn.fused import FusedMAFDensity, FusedParts, FusedTensors
from poseprior.nn.independent import IndependentGaussian

D = 7


def _flow(transform: str, dtype: torch.dtype, gen: torch.Generator, d: int = D, **options: object):
    flow = build_flow(d, blocks=3, hidden_features=16, residual_blocks=1, transform=transform, **options)
    flow = flow.to(dtype)
    # Perturb every parameter so the test does not pass because a layer is the identity at init.
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=dtype))
    flow.initialize(torch.randn(64, d, generator=gen, dtype=dtype))
    return flow


# ---------------------------------------------------------------------------- ActNorm
def test_actnorm_init_on_one_sample_is_finite(dtype: torch.dtype) -> None:
    an = ActNorm(4).to(dtype)
    x = torch.tensor([[0.1, -2.0, 3.0, 0.0]], dtype=dtype)
    an.initialize(x)
    y, ld = an(x)
    assert torch.isfinite(y).all() and torch.isfinite(ld).all() and not torch.isnan(an.log_scale).any()
    torch.testing.assert_close(y, torch.zeros_like(y))  # the one sample is the mean
    x2 = torch.randn(5, 4, dtype=dtype)
    assert torch.isfinite(an(x2)[0]).all()


def test_actnorm_constant_dimension_gives_finite_log_det(dtype: torch.dtype, gen: torch.Generator) -> None:
    an = ActNorm(3, eps=1e-4).to(dtype)
    x = torch.randn(100, 3, generator=gen, dtype=dtype)
    x[:, 1] = 0.7
    an.initialize(x)
    y, ld = an(x)
    assert torch.isfinite(ld).all() and torch.isfinite(y).all()
    # The constant dimension is scaled by eps^-1/2, not infinity.
    expected = torch.tensor(0.5 * math.log(1e-4), dtype=dtype)
    torch.testing.assert_close(an.log_scale.detach()[1], expected)
    # The others are standardized.
    std = y[:, [0, 2]].std(0, correction=0)
    torch.testing.assert_close(std, torch.ones(2, dtype=dtype), atol=1e-3, rtol=0)


def test_actnorm_raises_before_initialize() -> None:
    an = ActNorm(3)
    with pytest.raises(NotInitializedError, match="call .initialize"):
        an(torch.zeros(2, 3))
    with pytest.raises(NotInitializedError, match="call .initialize"):
        an.inverse(torch.zeros(2, 3))
    an.train()  # unlike nflows' ActNorm, a training-mode call does not initialize it either
    with pytest.raises(NotInitializedError):
        an(torch.zeros(2, 3))
    assert not bool(an.initialized)


def test_actnorm_state_dict_holds_the_initialized_flag() -> None:
    an = ActNorm(3)
    an.initialize(torch.randn(10, 3))
    other = ActNorm(3)
    other.load_state_dict(an.state_dict())
    assert bool(other.initialized)
    torch.testing.assert_close(other(torch.ones(2, 3))[0], an(torch.ones(2, 3))[0])


def test_actnorm_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="eps > 0"):
        ActNorm(3, eps=0.0)
    with pytest.raises(ValueError, match=r"expected shape \(N >= 1, 3\)"):
        ActNorm(3).initialize(torch.zeros(0, 3))


# ---------------------------------------------------------------------------- permutations
def test_permutations_are_deterministic_and_leave_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = FixedPermutation.random(10, torch.Generator().manual_seed(3))
    b = FixedPermutation.random(10, torch.Generator().manual_seed(3))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(FixedPermutation.reverse(4).indices, torch.tensor([3, 2, 1, 0]))
    f1 = build_flow(6, blocks=2, hidden_features=4, seed=5)
    f2 = build_flow(6, blocks=2, hidden_features=4, seed=5)
    perms = [(k, v) for k, v in f1.state_dict().items() if k.endswith("indices")]
    assert perms and all(torch.equal(v, f2.state_dict()[k]) for k, v in perms)


def test_permutation_round_trip_and_validation() -> None:
    p = FixedPermutation.random(6, torch.Generator().manual_seed(0))
    x = torch.randn(3, 6)
    y, ld = p(x)
    assert torch.equal(p.inverse(y)[0], x) and torch.equal(ld, torch.zeros(3))
    with pytest.raises(ValueError, match="expected a permutation of 0..2"):
        FixedPermutation(torch.tensor([0, 0, 2]))


# ---------------------------------------------------------------------------- layers and stacks
@pytest.mark.parametrize("transform", ["maf", "coupling"])
def test_round_trip_and_log_dets_sum_to_zero(
    transform: str, dtype: torch.dtype, gen: torch.Generator
) -> None:
    flow = _flow(transform, dtype, gen)
    x = torch.randn(50, D, generator=gen, dtype=dtype)
    z, ld = flow(x)
    x2, ld_inv = flow.inverse(z)
    torch.testing.assert_close(x2, x, atol=1e-4, rtol=0)
    torch.testing.assert_close(ld + ld_inv, torch.zeros_like(ld), atol=1e-4, rtol=0)
    assert ld.shape == (50,) and ld.abs().max() > 0.1  # a non-trivial map


@pytest.mark.parametrize("transform", ["maf", "coupling"])
def test_log_det_matches_autograd_jacobian(transform: str, gen: torch.Generator) -> None:
    flow = _flow(transform, torch.float64, gen)
    x = torch.randn(1, D, generator=gen, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.unsqueeze(0))[0].squeeze(0), x[0])
    _, logabsdet = torch.linalg.slogdet(jac)
    torch.testing.assert_close(flow(x)[1][0], logabsdet)


def test_single_layers_match_autograd_jacobian(gen: torch.Generator) -> None:
    maf = BoundedMaskedAffineAutoregressive(D, 8, num_blocks=1).double()
    coupling = BoundedAffineCoupling(torch.arange(D) % 2, 8, num_blocks=1).double()
    for layer in (maf, coupling):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        x = torch.randn(D, generator=gen, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v, m=layer: m(v.unsqueeze(0))[0].squeeze(0), x)
        torch.testing.assert_close(layer(x.unsqueeze(0))[1][0], torch.linalg.slogdet(jac)[1])


def test_log_scale_is_bounded() -> None:
    u = torch.tensor([-1e6, -3.0, 0.0, 1e-3, 1e6])
    s = soft_clamp(u, 2.0)
    assert s.abs().max() <= 2.0 and s[2] == 0 and abs(float(s[3]) - 1e-3) < 1e-8


def test_stack_raises_before_initialize() -> None:
    flow = build_flow(4, blocks=2, hidden_features=4)
    assert not flow.initialized
    with pytest.raises(NotInitializedError):
        flow(torch.zeros(2, 4))
    flow.initialize(torch.randn(1, 4))  # a batch of one is enough to be finite
    assert flow.initialized and torch.isfinite(flow(torch.randn(3, 4))[0]).all()


def test_build_flow_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="transform must be"):
        build_flow(4, transform="spline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="permutation must be"):
        build_flow(4, permutation="shuffle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="coupling flow needs at least 2"):
        build_flow(1, transform="coupling")


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(st.floats(-50.0, 50.0, allow_nan=False), min_size=D, max_size=D),
    transform=st.sampled_from(["maf", "coupling"]),
    double=st.booleans(),
)
def test_extreme_inputs_give_finite_outputs_and_gradients(
    values: list[float], transform: str, double: bool
) -> None:
    dtype = torch.float64 if double else torch.float32
    flow = _flow(transform, dtype, torch.Generator().manual_seed(1))
    x = torch.tensor([values], dtype=dtype, requires_grad=True)
    z, ld = flow(x)
    lp = -0.5 * z.pow(2).sum() + ld.sum()
    (grad,) = torch.autograd.grad(lp, x)
    assert torch.isfinite(z).all() and torch.isfinite(lp) and torch.isfinite(grad).all()


def test_fast_made_equals_nflows_made(gen: torch.Generator) -> None:
    layer = BoundedMaskedAffineAutoregressive(D, 8, num_blocks=2).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(5, D, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(layer._made(x), layer.autoregressive_net(x))


def _perturbed_maf(gen: torch.Generator, **options: object) -> BoundedMaskedAffineAutoregressive:
    layer = BoundedMaskedAffineAutoregressive(D, 32, num_blocks=2, **options).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return layer


@pytest.mark.parametrize("groups", [2, 3, D])
def test_grouped_made_makes_each_group_depend_only_on_the_groups_before_it(
    groups: int, gen: torch.Generator
) -> None:
    # The documented split: G consecutive groups of (nearly) equal size.
    layer = _perturbed_maf(gen, groups=groups)
    group = torch.arange(D) * groups // D
    assert torch.equal(group.unique(), torch.arange(groups)) and bool((group.diff() >= 0).all())
    x = torch.randn(D, generator=gen, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer._made(v.unsqueeze(0))[0], x)  # (2D, D)
    depends = jac.reshape(D, 2, D).abs().sum(1) > 0  # feature i's (scale, shift) on input j
    allowed = group[None, :] < group[:, None]
    assert not bool((depends & ~allowed).any()), depends  # no input of its own group or later
    assert bool(depends[allowed].all()), depends  # and every earlier group is seen
    torch.testing.assert_close(layer._made(x.unsqueeze(0)), layer.autoregressive_net(x.unsqueeze(0)))


def test_grouped_maf_inverse_round_trips_in_groups_passes(gen: torch.Generator) -> None:
    layer = _perturbed_maf(gen, groups=3)
    x = torch.randn(20, D, generator=gen, dtype=torch.float64)
    y, ld = layer(x)
    calls = []
    made = layer._made
    layer._made = lambda v: (calls.append(1), made(v))[1]  # count the network passes
    back, ld_inv = layer.inverse(y)
    assert len(calls) == 3
    torch.testing.assert_close(back, x)
    torch.testing.assert_close(ld_inv, -ld)
    flow = _flow("maf", torch.float64, gen, groups=3, input_bound=2.0)  # a whole stack
    z, ld = flow(x)
    back, ld_inv = flow.inverse(z)
    torch.testing.assert_close(back, x, atol=1e-8, rtol=0)
    torch.testing.assert_close(ld + ld_inv, torch.zeros_like(ld), atol=1e-8, rtol=0)


def test_grouped_and_bounded_layers_reject_bad_options_and_match_the_jacobian(gen: torch.Generator) -> None:
    for bad in (1, D + 1):
        with pytest.raises(ValueError, match=rf"groups must be in \[2, features={D}\], got {bad}"):
            BoundedMaskedAffineAutoregressive(D, 8, groups=bad)
    layer = _perturbed_maf(gen, groups=3, input_bound=0.5)
    x = 2.0 * torch.randn(D, generator=gen, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v.unsqueeze(0))[0].squeeze(0), x)
    torch.testing.assert_close(layer(x.unsqueeze(0))[1][0], torch.linalg.slogdet(jac)[1])
    # The bound is applied: the MADE sees 0.5 tanh(x / 0.5), not x.
    plain = copy.deepcopy(layer)
    plain.input_bound = None
    torch.testing.assert_close(layer._made(x.unsqueeze(0)), plain._made(soft_clamp(x, 0.5).unsqueeze(0)))
    assert not torch.allclose(layer._made(x.unsqueeze(0)), plain._made(x.unsqueeze(0)))


def test_masked_weight_cache_follows_weight_changes(gen: torch.Generator) -> None:
    layer = BoundedMaskedAffineAutoregressive(D, 8, num_blocks=1)
    x = torch.randn(4, D, generator=gen)
    layer.requires_grad_(False)
    with torch.no_grad():
        cached = layer(x)[0]
        torch.testing.assert_close(cached, layer(x)[0])
        assert layer._cache_key is not None
        layer.autoregressive_net.final_layer.weight.add_(0.5)  # in place, like an optimizer step
        changed = layer(x)[0]
    assert not torch.allclose(changed, cached)
    layer.requires_grad_(True)
    torch.testing.assert_close(layer(x)[0], changed)  # the uncached path agrees
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    with torch.no_grad():
        layer.autoregressive_net.final_layer.weight.zero_()
        layer(x)
        layer.load_state_dict(state)
        torch.testing.assert_close(layer(x)[0], changed)
    layer.double()
    assert layer._cache_key is None
    with torch.no_grad():
        torch.testing.assert_close(layer(x.double())[0].float(), changed, atol=1e-5, rtol=1e-5)


NO_PARTS = FusedParts()


def _assert_fused_equals_stack(
    flow: torch.nn.Module, dtype: torch.dtype, gen: torch.Generator, parts: FusedParts = NO_PARTS,
    reference_parts: object = None,
) -> None:
    """The fused density and per-row gradient equal the stack's (autograd); ``reference_parts(lp, x)``
    adds what ``parts`` adds to the fused one."""
    matrix = torch.randn(D + 2, D, generator=gen, dtype=dtype)  # two more inputs than features
    offset = torch.randn(D, generator=gen, dtype=dtype)
    fused = FusedMAFDensity(flow, matrix, offset, const=1.5)
    assert isinstance(fused.tensors, FusedTensors) and len(fused.tensors.blocks) == 3
    x = torch.randn(6, D + 2, generator=gen, dtype=dtype, requires_grad=True)
    z, ld = flow(x @ matrix + offset)
    expected = -0.5 * z.pow(2).sum(-1) + ld + 1.5
    if reference_parts is not None:
        expected = reference_parts(expected, x)
    w = torch.randn(6, generator=gen, dtype=dtype)
    (expected_grad,) = torch.autograd.grad((w * expected).sum(), x)
    tol = {} if dtype == torch.float64 else {"atol": 1e-4, "rtol": 1e-5}
    with torch.no_grad():
        lp, grad = fused.log_prob_and_grad(x, parts=parts)
        torch.testing.assert_close(lp, expected, **tol)
        torch.testing.assert_close(w[:, None] * grad, expected_grad, **tol)  # per-row gradients
        torch.testing.assert_close(fused.log_prob(x, parts=parts), lp)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_maf_density_equals_the_stack_and_its_gradient(
    dtype: torch.dtype, gen: torch.Generator
) -> None:
    _assert_fused_equals_stack(_flow("maf", dtype, gen), dtype, gen)


@pytest.mark.parametrize(
    "options", [{"input_bound": 1.0}, {"groups": 3}, {"input_bound": 1.0, "groups": 3}], ids=str
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_maf_density_with_input_bound_and_groups(
    options: dict, dtype: torch.dtype, gen: torch.Generator
) -> None:
    # (The MADEs' inputs reach several standard units here, so a bound of 1 is active.)
    _assert_fused_equals_stack(_flow("maf", dtype, gen, **options), dtype, gen)


def test_fused_maf_density_adds_the_broad_and_anatomical_parts(gen: torch.Generator) -> None:
    # A mixture with a broad Gaussian over inputs 0..6 and an anatomical one over inputs 7, 8.
    dtype, n = torch.float64, D + 2
    loc = torch.randn(n, generator=gen, dtype=dtype)
    scale = 0.5 + torch.rand(n, generator=gen, dtype=dtype)
    on_broad = torch.arange(n) < D
    broad, anatomy = IndependentGaussian(n).double(), IndependentGaussian(n).double()
    broad.set(loc, scale, on_broad)
    anatomy.set(loc, scale, ~on_broad)
    w = 0.3
    parts = FusedParts(broad.constants(math.log(w)), math.log1p(-w), anatomy.constants())

    def reference(lp_flow: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        normal = torch.distributions.Normal(loc, scale).log_prob(x)
        mixture = torch.logaddexp(lp_flow + math.log1p(-w), normal[:, on_broad].sum(-1) + math.log(w))
        return mixture + normal[:, ~on_broad].sum(-1)

    def anatomical_only(lp_flow: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return lp_flow + torch.distributions.Normal(loc, scale).log_prob(x)[:, ~on_broad].sum(-1)

    flow = _flow("maf", dtype, gen, input_bound=1.0, groups=3)
    _assert_fused_equals_stack(flow, dtype, gen, parts, reference)
    _assert_fused_equals_stack(flow, dtype, gen, FusedParts(anatomy=anatomy.constants()), anatomical_only)


def test_fused_maf_density_rejects_other_stacks(gen: torch.Generator) -> None:
    flow = _flow("coupling", torch.float64, gen)
    with pytest.raises(TypeError, match="FusedMAFDensity needs"):
        FusedMAFDensity(flow, torch.eye(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64), 0.0)
