"""Tests of the hand VAE prior (the contract suite covers the shared behaviour).

Every data set here is SYNTHETIC (:func:`poseprior.synthetic.synthetic_hand_poses`), not real hands.
"""

from __future__ import annotations

import math

import pytest
import torch
from contract import anatomical_log_prob

import poseprior
from poseprior import ShapeError, ValueCheckError
from poseprior.formats.adapters import hand_flat_to_relative, hand_relative_to_flat, mirror_hand
from poseprior.priors.hand_vae import HandVAEPrior
from poseprior.synthetic import synthetic_hand_poses

SMALL = {"latent_dim": 6, "hidden_features": 48, "num_layers": 2, "num_samples": 16}


def _hands(n: int, seed: int, dtype: torch.dtype, side: str = "left") -> torch.Tensor:
    return synthetic_hand_poses(n, generator=torch.Generator().manual_seed(seed), side=side, dtype=dtype)


TRAIN, VAL = _hands(3000, 0, torch.float64), _hands(500, 11, torch.float64)


@pytest.fixture(scope="module")
def fit_run() -> tuple[HandVAEPrior, dict[str, torch.Tensor]]:
    """The one 40-epoch fit of this module: a small left-hand prior on 3000 synthetic poses
    (float64, early stopping on 500 more), and its held-out NLL and reconstruction error before."""
    # nn.Linear draws its initial weights from the global RNG: fix them (inside a fork, so the
    # session's RNG is untouched) so that every run tests the same fitted model, not a random one.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = HandVAEPrior("left_hand", **SMALL).double()
    with torch.no_grad():
        before = {"nll": -prior.log_prob(VAL).mean(), "rec": prior.reconstruction_error(VAL).mean()}
    prior.fit(TRAIN, epochs=40, val=VAL, generator=torch.Generator().manual_seed(0))
    return prior, before


@pytest.fixture
def fitted(fit_run: tuple[HandVAEPrior, dict]) -> HandVAEPrior:
    """The fitted prior of :func:`fit_run` (shared: tests must not modify it)."""
    return fit_run[0]


# ---------------------------------------------------------------------------------- the estimate
def test_iwae_is_at_least_the_elbo_on_average(fitted: HandVAEPrior) -> None:
    x = _hands(300, 1, torch.float64)
    with torch.no_grad():
        iwae = fitted.iwae(x, num_samples=64)
        elbo = fitted.elbo(x, num_samples=64)
    assert torch.isfinite(iwae).all() and torch.isfinite(elbo).all()
    assert iwae.mean() >= elbo.mean()
    # log_prob is the IWAE estimate with the configured K and seed over the learned values, times
    # the anatomical values' Gaussians (the synthetic noise of 0.03 rad is below the 3-degree floor).
    assert fitted.anatomical_names() and fitted.dim == 45 and fitted.model_dim < 45
    expected = fitted.iwae(x[:20], num_samples=SMALL["num_samples"], seed=0)
    expected = expected + anatomical_log_prob(fitted, TRAIN, x[:20])
    torch.testing.assert_close(fitted.log_prob(x[:20]), expected)


def test_more_samples_tighten_the_bound_on_average(fitted: HandVAEPrior) -> None:
    x = _hands(300, 2, torch.float64)
    with torch.no_grad():
        k1 = torch.stack([fitted.iwae(x, num_samples=1, seed=s) for s in range(4)]).mean()
        k64 = torch.stack([fitted.iwae(x, num_samples=64, seed=s) for s in range(4)]).mean()
    assert k64 > k1


def test_log_prob_is_deterministic_and_per_pose(fitted: HandVAEPrior) -> None:
    x = _hands(40, 3, torch.float64)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = fitted.log_prob(x)
    b = fitted.log_prob(x)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state()), "log_prob used the global RNG"
    # The same draws serve every pose: a pose's estimate does not depend on its batch.
    torch.testing.assert_close(fitted.log_prob(x[7]), a[7])
    torch.testing.assert_close(fitted.log_prob(x[10:13]), a[10:13])
    # It is an estimate: another seed gives (slightly) different values.
    own, other = fitted.iwae(x), fitted.iwae(x, seed=1)
    assert not torch.equal(other, own)
    assert (other - own).abs().mean() < 1.0


def test_log_prob_is_differentiable_wrt_the_pose(fitted: HandVAEPrior) -> None:
    x = _hands(5, 4, torch.float64).requires_grad_(True)
    fitted.log_prob(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------- encode/decode
def test_encode_decode_shapes(fitted: HandVAEPrior) -> None:
    x = _hands(6, 5, torch.float64).reshape(2, 3, 15, 3)
    loc, scale = fitted.encode(x)
    assert loc.shape == scale.shape == (2, 3, SMALL["latent_dim"]) and (scale > 0).all()
    assert fitted.latent_shape == (SMALL["latent_dim"],)
    assert fitted.decode(loc).shape == (2, 3, 15, 3)
    assert fitted.decode(torch.zeros(SMALL["latent_dim"], dtype=torch.float64)).shape == (15, 3)
    assert fitted.reconstruction_error(x).shape == (2, 3)
    assert fitted.latent_penalty(x).shape == (2, 3)
    # decode is differentiable with respect to the code (VPoser-style latent fitting).
    z = torch.zeros(4, SMALL["latent_dim"], dtype=torch.float64, requires_grad=True)
    fitted.decode(z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_decode_errors_name_the_expected_shape(fitted: HandVAEPrior) -> None:
    with pytest.raises(ShapeError, match=r"expected latent codes with shape \(\*batch, 6\), got \(4, 5\)"):
        fitted.decode(torch.zeros(4, 5, dtype=torch.float64))
    with pytest.raises(ValueCheckError, match="expected a floating-point tensor on cpu"):
        fitted.decode(torch.zeros(4, 6, dtype=torch.long))


def test_latent_penalty_is_the_squared_posterior_mean(fitted: HandVAEPrior) -> None:
    x = _hands(8, 6, torch.float64)
    loc, _ = fitted.encode(x)
    torch.testing.assert_close(fitted.latent_penalty(x), loc.pow(2).sum(-1))
    # Atypical poses (fingers bent backwards) get larger codes on average.
    typical = _hands(200, 6, torch.float64)
    odd = typical.clone()
    odd[..., 2] = -odd[..., 2] - 0.8
    assert fitted.latent_penalty(odd).mean() > 2 * fitted.latent_penalty(typical).mean()
    grad = torch.autograd.grad(fitted.latent_penalty(x.requires_grad_(True)).sum(), x)[0]
    assert torch.isfinite(grad).all()


def test_reconstruction_metrics(fitted: HandVAEPrior) -> None:
    x = _hands(200, 7, torch.float64)
    geo = fitted.reconstruction_error(x)
    mae = fitted.reconstruction_error(x, metric="abs")
    assert (geo >= 0).all() and (mae >= 0).all()
    assert geo.mean() < 0.15  # the synthetic noise alone is 0.03 rad per value
    with pytest.raises(ValueError, match="metric must be 'geodesic' or 'abs', got 'l2'"):
        fitted.reconstruction_error(x, metric="l2")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- training
def test_fit_reduces_held_out_nll_and_reconstruction_error(fit_run: tuple[HandVAEPrior, dict]) -> None:
    prior, before = fit_run
    with torch.no_grad():
        after_nll = -prior.log_prob(VAL).mean()
        after_rec = prior.reconstruction_error(VAL).mean()
    assert after_nll < before["nll"] - 100  # from hundreds of nats to below zero
    assert after_rec < 0.5 * before["rec"]
    assert "val_loss" in prior.fit_history_[-1]


def test_fit_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    train = _hands(400, 12, torch.float64)
    priors = []
    for _ in range(2):
        torch.manual_seed(0)  # the same initial weights (module construction uses the global RNG)
        prior = HandVAEPrior("left_hand", **SMALL).double()
        state = torch.get_rng_state()
        prior.fit(train, epochs=2, generator=torch.Generator().manual_seed(5))
        assert torch.equal(state, torch.get_rng_state()), "fit drew from the global RNG"
        priors.append(prior)
    for a, b in zip(priors[0].parameters(), priors[1].parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_training_loss_is_the_negative_bound(objective: str) -> None:
    x = _hands(50, 13, torch.float64)
    prior = HandVAEPrior("left_hand", objective=objective, train_samples=4, **SMALL).double()
    prior.fit(x, epochs=1, generator=torch.Generator().manual_seed(0))
    prior.eval()  # eval mode: seeded draws, so the loss is deterministic and close to the bound
    torch.testing.assert_close(prior.training_loss(x), prior.training_loss(x), rtol=0, atol=0)
    # The loss draws per pose; iwae() shares its K draws by every pose, so average it over seeds.
    with torch.no_grad():
        if objective == "elbo":
            bound = prior.elbo(x, num_samples=256).mean()
        else:
            bound = torch.stack([prior.iwae(x, num_samples=4, seed=s).mean() for s in range(16)]).mean()
    torch.testing.assert_close(prior.training_loss(x), -bound, rtol=0, atol=1.0)
    prior.train()  # training mode: fresh draws from the generator
    losses = [prior.training_loss(x, torch.Generator().manual_seed(seed)) for seed in (1, 1, 2)]
    assert all(torch.isfinite(v) and v.requires_grad for v in losses)
    assert torch.equal(losses[0], losses[1]) and not torch.equal(losses[0], losses[2])


def test_variance_floor_keeps_off_manifold_costs_moderate() -> None:
    x = _hands(1500, 14, torch.float64)
    gen = torch.Generator().manual_seed(0)
    x[:, 3, 0] = 0.1 + 0.001 * torch.randn(1500, generator=gen, dtype=torch.float64)
    moved = x[:200].clone()
    moved[:, 3, 0] += math.radians(2.0)
    # Learned (anatomical=[]): the decoder's own floor bounds the cost.
    prior = HandVAEPrior("left_hand", min_std=0.02, anatomical=[], **SMALL).double()
    prior.fit(x, epochs=20, generator=torch.Generator().manual_seed(0))
    assert prior.dim == prior.model_dim == 45  # std 0.001 is not constant: the value is learned
    with torch.no_grad():
        cost = (prior.log_prob(x[:200]) - prior.log_prob(moved)).mean()
    # A floor of 0.02 rad allows about (0.035 / 0.02)^2 / 2 = 1.5 nats; a std of 0.001 would give 600.
    assert cost < 10.0, cost
    # By default the value moves less than its floor: anatomical, costing exactly its Gaussian's
    # share (the VAE sees it at its mean, so the estimate does not change).
    default = HandVAEPrior("left_hand", min_std=0.02, **SMALL).double()
    default.initialize(x)
    assert default.anatomical_mask[3, 0] and default.dim == 45
    with torch.no_grad():
        cost = default.log_prob(x[:200]) - default.log_prob(moved)
    expected = anatomical_log_prob(default, x, x[:200]) - anatomical_log_prob(default, x, moved)
    torch.testing.assert_close(cost, expected)


# ---------------------------------------------------------------------------------- hands
def _mirrored_pair() -> tuple[HandVAEPrior, HandVAEPrior]:
    # Every value learned (the synthetic noise is below the anatomical floors).
    both = HandVAEPrior("hands", mirror=True, anatomical=[], **SMALL).double()
    left = HandVAEPrior("left_hand", anatomical=[], **SMALL).double()
    # Give both priors the same networks: the mirrored model is a left-hand model.
    for name in ("encoder", "decoder"):
        getattr(left, name).load_state_dict(getattr(both, name).state_dict())
    with torch.no_grad():
        left.log_std.copy_(both.log_std)
    return both, left


def test_mirrored_right_hand_scores_like_the_left_hand() -> None:
    both, left = _mirrored_pair()
    # A little training so the comparison is not between two constant functions.
    data = torch.cat([_hands(300, 20, torch.float64), _hands(300, 21, torch.float64, side="right")], dim=1)
    both.fit(data, epochs=3, generator=torch.Generator().manual_seed(0))
    for name in ("encoder", "decoder"):
        getattr(left, name).load_state_dict(getattr(both, name).state_dict())
    for name in ("log_std", "input_loc", "input_scale"):
        getattr(left, name).data.copy_(getattr(both, name))
    p, q = _hands(10, 22, torch.float64), _hands(10, 23, torch.float64)
    lp = both.log_prob(torch.cat([p, mirror_hand(q)], dim=1))
    torch.testing.assert_close(lp, left.log_prob(p) + left.log_prob(q))
    # Swapping which hand holds which pose (mirrored) changes nothing.
    torch.testing.assert_close(both.log_prob(torch.cat([q, mirror_hand(p)], dim=1)), lp)
    assert both.latent_shape == (2, SMALL["latent_dim"])
    loc, _ = both.encode(torch.cat([p, mirror_hand(q)], dim=1))
    torch.testing.assert_close(loc[:, 1], left.encode(q)[0])
    assert both.decode(loc).shape == (10, 30, 3)
    s = both.sample(4, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 30, 3) and torch.isfinite(both.log_prob(s)).all()


def test_mirroring_needs_the_hands_layout_and_flat_poses() -> None:
    with pytest.raises(ValueError, match="mirror=True needs the 'hands' layout.*got layout 'left_hand'"):
        HandVAEPrior("left_hand", mirror=True)
    with pytest.raises(ValueError, match="mirror=True needs hand_convention='flat'"):
        HandVAEPrior("hands", mirror=True, hand_convention="mean_relative")
    unshared = HandVAEPrior("hands", **SMALL)  # without mirroring: one joint model of both hands
    assert unshared.latent_shape == (SMALL["latent_dim"],)


def test_mean_hand_convention_round_trip(fitted: HandVAEPrior) -> None:
    flat = _hands(12, 30, torch.float64)
    mean = 0.2 * torch.randn(45, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    relative = hand_flat_to_relative(flat, mean)
    back = fitted.from_convention(relative, "mean_relative", mean=mean)
    torch.testing.assert_close(back, flat)
    torch.testing.assert_close(fitted.to_convention(back, "mean_relative", mean=mean), relative)
    torch.testing.assert_close(fitted.log_prob(back), fitted.log_prob(flat))
    torch.testing.assert_close(fitted.from_convention(flat, "flat"), flat)
    # Both hands: the mean is left then right.
    both = HandVAEPrior("hands", **SMALL).double()
    means = torch.stack([mean.reshape(15, 3), -mean.reshape(15, 3)]).reshape(30, 3)
    two = torch.cat([flat, mirror_hand(flat)], dim=1)
    rel2 = both.to_convention(two, "mean_relative", mean=means)
    torch.testing.assert_close(rel2[:, 15:], hand_flat_to_relative(mirror_hand(flat), -mean))
    torch.testing.assert_close(both.from_convention(rel2, "mean_relative", mean=means.reshape(90)), two)
    # A prior trained on mean-relative poses records it and converts the other way.
    rel_prior = HandVAEPrior("left_hand", hand_convention="mean_relative", **SMALL).double()
    assert rel_prior.get_config()["hand_convention"] == "mean_relative"
    torch.testing.assert_close(rel_prior.from_convention(flat, "flat", mean=mean), relative)
    torch.testing.assert_close(rel_prior.to_convention(relative, "flat", mean=mean), flat)
    torch.testing.assert_close(hand_relative_to_flat(relative, mean), flat)


def test_convention_errors(fitted: HandVAEPrior) -> None:
    flat = _hands(3, 31, torch.float64)
    with pytest.raises(ValueError, match="needs the MANO mean hand: pass mean="):
        fitted.from_convention(flat, "mean_relative")
    with pytest.raises(ShapeError, match=r"expected the mean hand with 15 joints.*got shape \(30, 3\)"):
        fitted.from_convention(flat, "mean_relative", mean=torch.zeros(30, 3))
    with pytest.raises(ValueError, match="convention must be 'flat' or 'mean_relative', got 'mano'"):
        fitted.from_convention(flat, "mano")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="expected shape"):
        fitted.from_convention(torch.zeros(3, 16, 3), "flat")
    body = HandVAEPrior("body", **SMALL)
    with pytest.raises(ValueError, match="hand conventions apply to hand layouts.*'body'"):
        body.from_convention(torch.zeros(2, 21, 3), "mean_relative", mean=torch.zeros(45))


# ---------------------------------------------------------------------------------- dtypes, errors
def test_float32_and_float64_agree(fitted: HandVAEPrior) -> None:
    x = _hands(20, 40, torch.float64)
    lp64 = fitted.log_prob(x)
    single = HandVAEPrior(**fitted.get_config())  # the same values learned and anatomical
    state = fitted.state_dict()
    single.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    lp32 = single.log_prob(x.float())
    assert lp32.dtype == torch.float32 and lp64.dtype == torch.float64
    # The draws are the same (made in float64); only float32 rounding separates the estimates.
    torch.testing.assert_close(lp32.double(), lp64, atol=1e-3, rtol=1e-4)
    assert single.sample(3, generator=torch.Generator().manual_seed(0)).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latent_dim": 0}, "latent_dim must be a positive int, got 0"),
        ({"hidden_features": 2.5}, "hidden_features must be a positive int, got 2.5"),
        ({"num_samples": 0}, "num_samples must be a positive int, got 0"),
        ({"train_samples": -1}, "train_samples must be a positive int, got -1"),
        ({"min_std": 0.0}, "min_std must be a finite number > 0, got 0.0"),
        ({"objective": "vae"}, "objective must be 'elbo' or 'iwae', got 'vae'"),
        ({"hand_convention": "mean"}, "hand_convention must be 'flat' or 'mean_relative', got 'mean'"),
        ({"seed": 1.5}, "seed must be an int, got 1.5"),
        ({"mirror": "yes"}, "mirror must be a bool, got 'yes'"),
    ],
)
def test_constructor_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HandVAEPrior("left_hand", **kwargs)


def test_method_errors(fitted: HandVAEPrior) -> None:
    x = _hands(3, 50, torch.float64)
    with pytest.raises(ValueError, match="iwae num_samples must be a positive int, got 0"):
        fitted.iwae(x, num_samples=0)
    with pytest.raises(ValueError, match="elbo num_samples must be a positive int, got 0"):
        fitted.elbo(x, num_samples=0)
    with pytest.raises(ShapeError, match=r"HandVAEPrior.encode: expected shape \(\*batch, 15, 3\)"):
        fitted.encode(torch.zeros(3, 45, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['epoch'\]; it takes \['batch_size',"):
        HandVAEPrior("left_hand", **SMALL).fit(x, epoch=3)


def test_registered_and_inexact() -> None:
    assert poseprior.prior_class("hand_vae") is HandVAEPrior
    assert HandVAEPrior.has_exact_log_prob is False
    prior = poseprior.create("hand_vae")
    n = sum(p.numel() for p in prior.parameters())
    assert 1.5e6 < n < 2.5e6, n  # the design's size: about 2M parameters by default


# ---------------------------------------------------------------------------------- synthetic data
def test_synthetic_hand_poses() -> None:
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = _hands(500, 60, torch.float64)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, _hands(500, 60, torch.float64))
    assert a.shape == (500, 15, 3) and a.dtype == torch.float64
    assert (a.reshape(500, -1).std(0) > 0.02).all()  # nothing constant
    torch.testing.assert_close(_hands(500, 60, torch.float64, side="right"), mirror_hand(a))
    # The grasp synergy: the four fingers' middle joints curl together (flexion about -z).
    pip = -a[:, [1, 4, 7, 10], 2]
    assert torch.corrcoef(pip.T)[0, 1:].min() > 0.5
    with pytest.raises(ValueError, match="side must be 'left' or 'right', got 'up'"):
        synthetic_hand_poses(3, side="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be a non-negative int, got -1"):
        synthetic_hand_poses(-1)
