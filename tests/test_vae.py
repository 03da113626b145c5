"""Tests of the body VAE prior, the VAE machinery it shares with hand_vae, and latent-space fitting.

The contract suite covers the shared prior behaviour; the hand-specific tests are in test_hand_vae.py.
"""

from __future__ import annotations

import pytest
import torch

import poseprior
from poseprior import ShapeError
from poseprior.fitting import LatentFitResult, fit_to_joints_latent, mpjpe
from poseprior.kinematics import forward_kinematics
from poseprior.priors._vae import LOC_RANGE, LOG_SCALE_RANGE, VAEBase, bounded
from poseprior.priors.hand_vae import HandVAEPrior
from poseprior.priors.vae import VAEPrior
from poseprior.synthetic import synthetic_hand_poses

TINY = {"latent_dim": 4, "hidden_features": 32, "num_samples": 8}


def _body(n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """SYNTHETIC correlated body poses (N, 21, 3), not real motion."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(63, 6, generator=g, dtype=dtype) * 0.15
    x = torch.randn(n, 6, generator=g, dtype=dtype) @ a.T
    x = x + 0.05 * torch.randn(n, 63, generator=g, dtype=dtype)
    return x.reshape(n, 21, 3)


def _finite_far(prior: VAEBase, dtype: torch.dtype) -> None:
    """Issue 15.6: 500 poses up to 20 rad all finite; gradients and HVPs finite at 10, 20 and 50 rad."""
    g = torch.Generator().manual_seed(0)
    event = prior.event_shape
    with torch.no_grad():
        lp = prior.log_prob((torch.rand(500, *event, generator=g, dtype=dtype) * 2 - 1) * 20)
    assert int((~torch.isfinite(lp)).sum()) == 0, f"{int((~torch.isfinite(lp)).sum())} of 500 non-finite"
    for scale in (10.0, 20.0, 50.0):
        x = ((torch.rand(40, *event, generator=g, dtype=dtype) * 2 - 1) * scale).requires_grad_(True)
        (grad,) = torch.autograd.grad(prior.log_prob(x).sum(), x, create_graph=True)
        (hv,) = torch.autograd.grad((grad * torch.randn(x.shape, generator=g, dtype=dtype)).sum(), x)
        assert torch.isfinite(grad).all() and torch.isfinite(hv).all(), f"non-finite at {scale} rad"


# ---------------------------------------------------------------------------------- numerics (issue 15.6)
def test_hand_vae_stays_finite_far_from_the_data_after_a_short_fit() -> None:
    # Before the encoder was bounded, this fit drove its scale far past 1e10 on poses of 20 rad: 63
    # of 500 log_probs were non-finite in float32, gradients NaN from 20 rad.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = HandVAEPrior("left_hand", latent_dim=8, hidden_features=64, num_layers=3, num_samples=16)
    x = synthetic_hand_poses(500, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    prior.fit(x, epochs=6, lr=1e-2, batch_size=100, generator=torch.Generator().manual_seed(2))
    _finite_far(prior, torch.float32)
    with torch.no_grad():
        loc, scale = prior.encode(100 * torch.ones(3, 15, 3))
    assert float(loc.abs().max()) <= LOC_RANGE[1] + LOC_RANGE[2]
    assert float(scale.log().max()) <= LOG_SCALE_RANGE[1] + LOG_SCALE_RANGE[2] + 1e-5


def test_body_vae_stays_finite_far_from_the_data() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = VAEPrior(latent_dim=8, hidden_features=64, num_samples=16)
    prior.fit(_body(500, 1, torch.float32), epochs=6, lr=1e-2, batch_size=100,
              generator=torch.Generator().manual_seed(2))
    _finite_far(prior, torch.float32)


def test_bounded_is_the_identity_inside_and_saturates_smoothly() -> None:
    u = torch.linspace(-20, 20, 4001, dtype=torch.float64, requires_grad=True)
    y = bounded(u, -8.0, 2.0, 1.0)
    inside = (u >= -8) & (u <= 2)
    assert torch.equal(y[inside], u[inside])
    assert float(y.detach().max()) < 3.0 and float(y.detach().min()) > -9.0 and float(y[-1].detach()) > 2.99
    (d1,) = torch.autograd.grad(y.sum(), u, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), u)
    d1 = d1.detach()
    assert bool((d1 > 0).all()) and bool((d1 <= 1).all())  # increasing, never steeper than the identity
    # Continuous first and second derivatives at the ends of the range (1 and 0 on both sides).
    for edge in (-8.0, 2.0):
        near = (u - edge).abs() < 0.011
        assert float((d1[near] - 1).abs().max()) < 1e-3 and float(d2[near].abs().max()) < 0.03


# ---------------------------------------------------------------------------------- body VAE
def test_initial_weights_come_from_the_seed_not_the_global_generator() -> None:
    state = torch.random.get_rng_state()
    a, b, c = VAEPrior(**TINY), VAEPrior(**TINY), VAEPrior(**TINY, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # torch's global generator untouched
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        if ".out." not in name and name != "log_std":  # the last layers and log_std start equal
            assert not torch.equal(p, r), name


def test_defaults_are_vposers_architecture() -> None:
    prior = poseprior.create("vae")
    assert isinstance(prior, VAEBase) and isinstance(poseprior.create("hand_vae"), VAEBase)
    assert prior.layout.name == "body" and prior.latent_dim == 32 and not prior.has_exact_log_prob
    encoder = [tuple(m.weight.shape) for m in (*prior.encoder.hidden, prior.encoder.out)]
    assert encoder == [(512, 63), (64, 512)]
    assert [tuple(m.weight.shape) for m in (*prior.decoder.hidden, prior.decoder.out)] == [
        (512, 32), (512, 512), (126, 512)
    ]
    assert isinstance(prior.encoder.act, torch.nn.LeakyReLU) and not prior.encoder.residual
    # q(z|x) starts at the prior N(0, I), the decoder at the mean pose.
    q = prior.encode(torch.zeros(2, 21, 3))
    torch.testing.assert_close(q.scale, torch.ones(2, 32))
    torch.testing.assert_close(q.loc, torch.zeros(2, 32))


def test_encode_is_a_normal_and_decode_inverts_it_on_the_data() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = VAEPrior(**TINY).double()
    x = _body(700, 2)
    before = float(prior.reconstruction_error(x[:200]).detach().mean())
    prior.fit(x[200:], epochs=20, lr=1e-2, batch_size=100, generator=torch.Generator().manual_seed(0))
    q = prior.encode(x[:6].reshape(2, 3, 21, 3))
    assert isinstance(q, torch.distributions.Normal) and q.batch_shape == (2, 3, 4)
    assert prior.decode(q.loc).shape == (2, 3, 21, 3)
    torch.testing.assert_close(prior.decode(q.loc).reshape(6, 21, 3), prior.decode(q.loc.reshape(6, 4)))
    assert float(prior.reconstruction_error(x[:200]).detach().mean()) < 0.75 * before
    torch.testing.assert_close(prior.latent_penalty(x[:6]), q.loc.reshape(6, 4).pow(2).sum(-1))
    # log_prob is the IWAE estimate plus the anatomical part and the broad mixture (the base class's).
    lp = prior.log_prob(x[:5])
    torch.testing.assert_close(lp, prior._mix(prior.iwae(x[:5]), x[:5]))
    assert bool(prior.iwae(x[:200], num_samples=32).mean() >= prior.elbo(x[:200], num_samples=32).mean())


def test_vae_errors_name_the_problem() -> None:
    prior = VAEPrior(**TINY)
    with pytest.raises(ShapeError, match=r"VAEPrior.decode: expected latent codes with shape \(\*batch, 4\)"):
        prior.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="VAEPrior: encoder_layers must be a positive int, got 0"):
        VAEPrior(encoder_layers=0)
    with pytest.raises(ValueError, match="VAEPrior: residual must be a bool"):
        VAEPrior(residual="no")
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        VAEPrior(activation="swish")
    with pytest.raises(ValueError, match="VAEPrior: iwae num_samples must be a positive int, got 0"):
        prior.iwae(torch.zeros(2, 21, 3), num_samples=0)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="VAEPrior: noise_std must be a finite number >= 0"):
            VAEPrior(noise_std=bad)


def test_training_noise_widens_the_decoder_and_leaves_evaluation_alone() -> None:
    """noise_std: fit learns the data convolved with the noise (the decoder's std covers it), is
    still reproducible from the generator, and log_prob of the fitted prior is noise-free."""
    x = _body(600, 4)

    def fitted(noise: float) -> VAEPrior:
        prior = VAEPrior(**TINY, noise_std=noise, broad_weight=0.0).double()  # weights seeded by `seed`
        prior.fit(x, epochs=20, lr=3e-2, batch_size=100, generator=torch.Generator().manual_seed(0))
        return prior.eval()

    quiet, noisy, again = fitted(0.0), fitted(0.3), fitted(0.3)
    wide, narrow = float(noisy._std().mean().detach()), float(quiet._std().mean().detach())
    assert wide > 0.3 * 0.9 > narrow, (wide, narrow)
    with torch.no_grad():
        assert torch.equal(noisy.log_prob(x[:50]), again.log_prob(x[:50]))
        assert torch.equal(noisy.log_prob(x[:50]), noisy.log_prob(x[:50]))
    assert noisy.get_config()["noise_std"] == 0.3


# ---------------------------------------------------------------------------------- latent fitting
def _decoder_with_structure() -> VAEPrior:
    """A tiny body VAE whose decoder varies with z (random last layer), untrained: enough to fit through."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = VAEPrior(latent_dim=6, hidden_features=32, num_samples=4, broad_weight=0.0).double()
        torch.nn.init.normal_(prior.decoder.out.weight, std=0.05)
    prior.initialize(_body(200, 3))
    return prior.eval()


def test_fit_to_joints_latent_recovers_decoded_poses() -> None:
    prior = _decoder_with_structure()
    target_z = 0.8 * torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = prior.decode(target_z).detach()
    observed = forward_kinematics(target)
    res = fit_to_joints_latent(observed, prior, weight=0.0, steps=200)
    assert isinstance(res, LatentFitResult) and res.latent.shape == (4, 6)
    torch.testing.assert_close(res.body_pose, prior.decode(res.latent))
    assert mpjpe(res.joints, observed) < 0.003 and res.history[-1]["loss"] < res.history[0]["loss"]
    assert not any(p.grad is not None for p in prior.parameters()), "the prior's weights got gradients"
    # The latent penalty pulls the codes towards 0, and a previous result restarts from its codes.
    pulled = fit_to_joints_latent(observed, prior, weight=1.0, steps=50)
    assert float(pulled.latent.norm()) < float(res.latent.norm())
    again = fit_to_joints_latent(observed, prior, weight=0.0, steps=0, init=res)
    torch.testing.assert_close(again.latent, res.latent)
    from_poses = fit_to_joints_latent(observed, prior, weight=0.0, steps=0, init=target)
    torch.testing.assert_close(from_poses.latent, prior.encode(target).loc)


def test_fit_to_joints_latent_refuses_priors_without_a_latent() -> None:
    observed = forward_kinematics(torch.zeros(2, 21, 3))
    gauss = poseprior.create("gaussian").fit(_body(100, 4).float())
    with pytest.raises(TypeError, match="needs one latent code per pose .* got GaussianPrior; fit the pose"):
        fit_to_joints_latent(observed, gauss)
    with pytest.raises(ShapeError, match="needs a prior over layout 'body'"):
        fit_to_joints_latent(observed, HandVAEPrior("left_hand", **TINY, num_layers=1))
    with pytest.raises(ValueError, match="fit_to_joints_latent: weight must be a finite number >= 0"):
        fit_to_joints_latent(observed, _decoder_with_structure(), weight=-1.0)
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'lbfgs'"):
        fit_to_joints_latent(observed, _decoder_with_structure(), optimizer="sgd")


def test_fit_to_joints_latent_with_adam() -> None:
    prior = _decoder_with_structure()
    observed = forward_kinematics(prior.decode(0.5 * torch.ones(2, 6, dtype=torch.float64)).detach())
    res = fit_to_joints_latent(observed, prior, weight=0.0, steps=60, optimizer="adam", lr=0.05)
    assert len(res.history) == 60 and res.history[-1]["data"] < 0.1 * res.history[0]["data"]
