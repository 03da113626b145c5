"""The contract every registered prior passes, on tiny configurations (zuko's test_flows style)."""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import pkgutil
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from contract import (
    CONSTANT_VALUE,
    ONE_JOINT,
    TINY_CONFIGS,
    assert_honest_tails,
    assert_log_prob_shapes,
    assert_sample_shapes,
    contract_data,
    fitted,
    integral_estimate,
)

import poseprior
from poseprior import CheckpointError, NotInitializedError, ShapeError, ValueCheckError
from poseprior.hub import CHECKPOINT_FORMAT

names = pytest.mark.parametrize("name", sorted(TINY_CONFIGS))


def test_registry_is_covered() -> None:
    assert set(poseprior.list_priors()) == set(TINY_CONFIGS)


def test_every_prior_module_is_registered() -> None:
    """A module under poseprior/priors/ that registers nothing would escape the contract."""
    import poseprior.priors as pkg

    registered = {poseprior.prior_class(n).__module__ for n in poseprior.list_priors()}
    modules = {
        f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")
    }
    for module in modules:
        importlib.import_module(module)
    assert modules <= registered, f"modules that register no prior: {sorted(modules - registered)}"


@names
def test_shapes_and_description(
    name: str, dtype: torch.dtype, device: torch.device, gen: torch.Generator
) -> None:
    prior, data = fitted(name, dtype, device=device)
    j = len(prior.layout)
    assert prior.event_shape == (j, 3)
    assert prior.dim == 3 * j and prior.model_dim == 3 * j - 1  # the constant value is anatomical
    assert prior.excluded_names() == []
    assert prior.anatomical_names() == [
        f"{prior.layout.joints[CONSTANT_VALUE[0]]}.{'xyz'[CONSTANT_VALUE[1]]}"
    ]
    assert isinstance(prior.has_exact_log_prob, bool) and prior.space.startswith("axis_angle:")
    assert_log_prob_shapes(prior, data)
    assert_sample_shapes(prior, gen)


@names
def test_finite_and_differentiable(name: str, dtype: torch.dtype, device: torch.device) -> None:
    prior, data = fitted(name, dtype, device=device)
    samples = prior.sample(50, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(prior.log_prob(samples)).all()
    x = data[:50].clone().requires_grad_(True)
    lp = prior.log_prob(x)
    assert torch.isfinite(lp).all()
    (-lp.mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in prior.named_parameters():
        assert p.grad is not None, f"parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname


@names
def test_finite_far_from_the_data(name: str) -> None:
    """Any finite pose up to 50 rad: finite log_prob, gradient and Hessian-vector product."""
    prior, data = fitted(name)
    gen = torch.Generator().manual_seed(5)
    scale = torch.tensor([0.1, 1.0, 5.0, 20.0, 50.0], dtype=data.dtype).repeat_interleave(8)
    x = (torch.rand(40, *prior.event_shape, generator=gen, dtype=data.dtype) * 2 - 1) * scale[:, None, None]
    x = x.requires_grad_(True)
    lp = prior.log_prob(x)
    (g,) = torch.autograd.grad(lp.sum(), x, create_graph=True)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(g).all() and torch.isfinite(hv).all()


@names
def test_train_eval_equivalence(name: str, dtype: torch.dtype, device: torch.device) -> None:
    prior, data = fitted(name, dtype, device=device)
    prior.train()
    a = prior.log_prob(data[:20])
    prior.eval()
    b = prior.log_prob(data[:20])
    torch.testing.assert_close(a, b)


@names
def test_normalization_on_one_joint(name: str, gen: torch.Generator) -> None:
    # One joint (D = 3: two learned values and the anatomical constant one).
    prior, _ = fitted(name, layout=ONE_JOINT, n=2000)
    assert prior.dim == 3 and prior.model_dim == 2
    samples = prior.sample(4000, generator=gen)
    total = integral_estimate(prior, samples, 200_000, gen)
    assert 0.9 < total < 1.1, total


@names
def test_fit_improves_held_out_nll(name: str, dtype: torch.dtype) -> None:
    kwargs, fit_opts = TINY_CONFIGS[name]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = poseprior.create(name, **kwargs).to(dtype)
    both = contract_data(prior.layout, 1000, 1, dtype)  # one distribution: train on 800, hold out 200
    data, held_out = both[:800], both[800:]
    if prior.requires_initialization:
        with pytest.raises(NotInitializedError, match="call .fit"):
            prior.log_prob(held_out)
    prior.initialize(data)
    before = -prior.log_prob(held_out).mean()
    assert prior.fit(data, generator=torch.Generator().manual_seed(3), **fit_opts) is prior
    after = -prior.log_prob(held_out).mean()
    assert after < before


@names
def test_fit_is_reproducible_with_a_generator(name: str) -> None:
    kwargs, fit_opts = TINY_CONFIGS[name]
    data = contract_data(poseprior.get_layout(kwargs["layout"]), 300, 4, torch.float64)
    states = []
    for _ in range(2):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            prior = poseprior.create(name, **kwargs).double()
        torch.rand(10)  # the global RNG moves between the fits: it must not matter
        prior.fit(
            data, generator=torch.Generator().manual_seed(9), **{**fit_opts, "epochs": 2} if fit_opts else {}
        )
        states.append(prior.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


ITERATIVE = [n for n in sorted(TINY_CONFIGS) if poseprior.prior_class(n).iterative_fit]


@pytest.mark.parametrize("name", ITERATIVE)
def test_divergence_stops_fit_with_the_last_good_weights(name: str) -> None:
    """Issue 15: a non-finite training loss stops fit with an error that names the step and the
    learning rate and blames the optimization, not the data; the last good weights stay."""
    prior, data = fitted(name)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    own, calls = prior._training_loss, []

    def breaks_at_the_third_step(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        calls.append(1)
        loss = own(x, generator)
        return loss * float("nan") if len(calls) == 3 else loss

    prior._training_loss = breaks_at_the_third_step  # (an instance attribute: this prior only)
    with pytest.raises(
        poseprior.FitDivergedError,
        match=r"loss is nan at epoch 0, step 2 \(learning rate "
        r"[0-9.e+-]+\)\. The data was checked finite.*lower lr.*initial weights are restored",
    ):
        prior.fit(data, epochs=3, batch_size=100, generator=torch.Generator().manual_seed(0))
    after = prior.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the weights of the failed steps were kept"


def test_a_huge_learning_rate_is_caught_not_returned() -> None:
    # global_flow.fit(lr=1e6) used to return NaN weights and fit_history_ == [nan].
    prior, data = fitted("global_flow")
    with pytest.raises(poseprior.FitDivergedError, match="diverged"):
        prior.fit(data, lr=1e6, epochs=3, batch_size=100, generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v).all() for v in prior.state_dict().values() if v.is_floating_point())
    assert torch.isfinite(prior.log_prob(data[:5])).all()


@names
def test_sampling_is_reproducible_and_agrees_with_log_prob(
    name: str, dtype: torch.dtype, device: torch.device
) -> None:
    prior, _ = fitted(name, dtype, device=device)
    a = prior.sample(5, generator=torch.Generator().manual_seed(7))
    torch.rand(100)  # move the global RNG
    state = torch.get_rng_state()
    b = prior.sample(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state()), "sampling with a generator used the global RNG"
    for p in (prior, prior.without_broad()):
        x, lp = p.sample_and_log_prob((2, 3), generator=torch.Generator().manual_seed(8))
        assert x.shape == (2, 3, *p.event_shape) and lp.shape == (2, 3)
        assert torch.equal(x, p.sample((2, 3), generator=torch.Generator().manual_seed(8)))
        torch.testing.assert_close(lp, p.log_prob(x))


@names
def test_honest_tails(name: str) -> None:
    """Issue 14: no mass beyond pi, log p falling along rays; with and without the broad component."""
    prior, data = fitted(name, broad_weight=0.3)
    val = contract_data(prior.layout, 300, 21, torch.float64)
    for p in (prior, prior.without_broad()):
        assert_honest_tails(p, data, val, n=5000)


@names
def test_anatomical_value(name: str) -> None:
    """The value constant in the data gets N(mean, floor^2): exact costs, a gradient back to the mean."""
    prior, data = fitted(name)
    j, a = CONSTANT_VALUE
    floor = float(prior.spreads()[j, a])
    assert floor >= prior.min_std
    x = data[:10].clone()
    base = prior.log_prob(x)
    for delta in (0.01, 0.1, 0.5):
        moved = x.clone()
        moved[:, j, a] += delta
        cost = base - prior.log_prob(moved)
        torch.testing.assert_close(cost, torch.full_like(cost, 0.5 * (delta / floor) ** 2))
    moved = x.clone()
    moved[:, j, a] += 0.3
    moved.requires_grad_(True)
    prior.penalty(moved).sum().backward()
    assert bool((moved.grad[:, j, a] > 0).all())  # descending the penalty moves the value back
    samples = prior.sample(4000, generator=torch.Generator().manual_seed(1))[:, j, a]
    assert abs(float(samples.std()) / floor - 1) < 0.05 and abs(float(samples.mean()) - 0.25) < 0.01


@names
def test_a_frozen_joint_outside_the_body_is_excluded(name: str, caplog: pytest.LogCaptureFixture) -> None:
    kwargs, fit_opts = TINY_CONFIGS[name]
    data = contract_data(poseprior.get_layout(kwargs["layout"]), 300, 4, torch.float64)
    data[:, 1] = torch.tensor([0.1, -0.2, 0.3], dtype=data.dtype)  # a finger that was not captured
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = poseprior.create(name, **kwargs).double()
    with caplog.at_level(logging.WARNING, logger="poseprior"):
        prior.fit(
            data, generator=torch.Generator().manual_seed(9), **{**fit_opts, "epochs": 1} if fit_opts else {}
        )
    joint = prior.layout.joints[1]
    assert joint in caplog.text and "excluded" in caplog.text
    assert (
        prior.excluded_names() == [f"{joint}.{a}" for a in "xyz"] and prior.dim == 3 * len(prior.layout) - 3
    )
    s = prior.sample(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s[:, 1], data[0, 1].expand(5, 3))
    moved = data[:4].clone()
    moved[:, 1] += 1.0
    torch.testing.assert_close(prior.log_prob(moved), prior.log_prob(data[:4]))  # no density over it


@names
def test_save_load_roundtrip(name: str, dtype: torch.dtype, device: torch.device, tmp_path: Path) -> None:
    prior, data = fitted(name, dtype, device=device)
    prior.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = poseprior.load(tmp_path / "ckpt")
    assert type(loaded) is type(prior) and loaded.get_config() == prior.get_config()
    torch.testing.assert_close(loaded.to(data).log_prob(data[:10]), prior.eval().log_prob(data[:10]))
    assert type(prior).load(tmp_path / "ckpt").dim == prior.dim


@names
def test_weights_of_other_value_kinds_do_not_load(name: str) -> None:
    """A prior built without the fitted prior's config (all values learned) refuses its weights."""
    prior, _ = fitted(name)
    fresh = poseprior.create(name, **TINY_CONFIGS[name][0])
    with pytest.raises(RuntimeError, match="other learned/anatomical values|size mismatch"):
        fresh.load_state_dict(prior.state_dict())
    same = type(prior)(**prior.get_config())
    same.load_state_dict(prior.state_dict())  # the config rebuilds the same kinds of values


@names
def test_checkpoint_errors(name: str, tmp_path: Path) -> None:
    prior, _ = fitted(name, torch.float32)
    ckpt = prior.save(tmp_path / "ckpt")
    other = next(n for n in ["gaussian", *poseprior.list_priors()] if n != name)
    with pytest.raises(CheckpointError, match=f"holds a '{name}' prior, not a '{other}' prior"):
        poseprior.prior_class(other).load(ckpt)
    with pytest.raises(CheckpointError, match="does not exist"):
        poseprior.load(tmp_path / "nowhere")
    # A truncated weights file.
    weights = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        poseprior.load(ckpt)
    # A pickle instead of safetensors is refused, never executed.
    import pickle

    (ckpt / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        poseprior.load(ckpt)
    # Weights of another architecture: missing/unexpected keys.
    from safetensors.torch import save_file

    save_file({"something_else": torch.zeros(3)}, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing: .*unexpected: \\['something_else'\\]"):
        poseprior.load(ckpt)
    # Another checkpoint format version.
    cfg = (ckpt / "config.json").read_text().replace(f'"format": {CHECKPOINT_FORMAT}', '"format": 99')
    (ckpt / "config.json").write_text(cfg)
    with pytest.raises(CheckpointError, match="format 99"):
        poseprior.load(ckpt)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        poseprior.load(ckpt)


@names
def test_bad_input_errors(name: str) -> None:
    prior, data = fitted(name, torch.float32)
    j, lname = len(prior.layout), prior.layout.name
    with pytest.raises(
        ShapeError, match=rf"expected shape \(\*batch, {j}, 3\).*layout '{lname}'.*got \(4, {j + 1}, 3\)"
    ):
        prior.log_prob(torch.zeros(4, j + 1, 3))
    with pytest.raises(ValueError, match=rf"flat shape \(4, {3 * j}\).*reshape"):
        prior.log_prob(torch.zeros(4, 3 * j))
    with pytest.raises(ShapeError, match="rotation matrices.*matrix_to_axis_angle"):
        prior.log_prob(torch.eye(3).expand(4, j, 3, 3))
    with pytest.raises(ShapeError, match="6D rotations"):
        prior.log_prob(torch.zeros(4, j, 6))
    bad = data[:4].clone()
    bad[2, 1, 0] = float("nan")
    with pytest.raises(ValueCheckError, match=r"NaN or inf \(first bad flattened batch indices: \[2\]\)"):
        prior.log_prob(bad)
    with pytest.raises(ValueCheckError, match="floating-point"):
        prior.log_prob(torch.zeros(4, j, 3, dtype=torch.long))
    with pytest.raises(ValueCheckError, match="on meta but the prior is on cpu"):
        prior.log_prob(data[:2].to("meta"))
    with pytest.raises(ShapeError, match="N >= 2"):
        prior.fit(data[:1])
    for shape in (-1, 2.5, (2, -3)):
        with pytest.raises(ValueError, match=r"sample_shape must be an int >= 0 .*got"):
            prior.sample(shape)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['epoch'\]; it takes"):
        prior.fit(data, epoch=3)
    before = data.clone()
    prior.log_prob(data)
    assert torch.equal(data, before), "log_prob modified its input"


@names
def test_fit_accepts_numpy_and_iterables(name: str) -> None:
    kwargs, fit_opts = TINY_CONFIGS[name]
    data = contract_data(poseprior.get_layout(kwargs["layout"]), 200, 4, torch.float32)
    opts = {**fit_opts, "epochs": 1} if fit_opts else {}
    for source in (data.numpy(), list(data.split(50))):
        prior = poseprior.create(name, **kwargs).fit(
            source, generator=torch.Generator().manual_seed(0), **opts
        )
        assert torch.isfinite(prior.log_prob(data[:3])).all()


@names
def test_full_layout_errors_name_the_format(name: str) -> None:
    kwargs, _ = TINY_CONFIGS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = poseprior.create(name, **dict(kwargs, layout="smplx"))
    with pytest.raises(ShapeError, match=r"got \(2, 53, 3\); 53 joints is the 'smplx53' layout"):
        prior.log_prob(torch.zeros(2, 53, 3))
    with pytest.raises(ShapeError, match=r"52 joints is the 'smplh' layout"):
        prior.log_prob(torch.zeros(2, 52, 3))


@names
def test_invalid_options_are_refused(name: str) -> None:
    kwargs, _ = TINY_CONFIGS[name]
    for key, value in (
        ("min_std", 0.0),
        ("min_std", math.nan),
        ("min_std", -1.0),
        ("broad_weight", 1.0),
        ("broad_weight", -0.1),
        ("broad_weight", math.nan),
        ("broad_scale", math.inf),
        ("broad_scale", 0.5),
    ):
        with pytest.raises(ValueError, match=key):
            poseprior.create(name, **{**kwargs, key: value})


def test_values_beyond_the_accepted_range_are_refused_clearly() -> None:
    """Issue 15: |values| >= 1e19 gave -inf and NaN gradients; values beyond MAX_ABS_RADIANS are now a
    clear error, NaN and inf another (one reduction finds all three)."""
    from poseprior._checks import MAX_ABS_RADIANS, check_pose

    x = torch.full((2, 1, 3), MAX_ABS_RADIANS)
    assert check_pose(x, ONE_JOINT, "here") is x
    for huge in (2 * MAX_ABS_RADIANS, 1e19, 3e38):
        y = x.clone()
        y[1, 0, 2] = -huge
        with pytest.raises(
            ValueCheckError, match=r"values up to .* rad \(first such flattened batch indices: \[1\]\)"
        ):
            check_pose(y, ONE_JOINT, "here")
    x[1, 0, 2] = float("inf")
    with pytest.raises(ValueCheckError, match=r"NaN or inf \(first bad flattened batch indices: \[1\]\)"):
        check_pose(x, ONE_JOINT, "here")


@names
def test_finite_at_the_largest_accepted_values(name: str) -> None:
    from poseprior._checks import MAX_ABS_RADIANS

    prior, _ = fitted(name, torch.float32)
    x = torch.full((2, *prior.event_shape), MAX_ABS_RADIANS)
    x[1] *= -1
    x.requires_grad_(True)
    lp = prior.log_prob(x)
    (g,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(g).all()


def _has_part_swap(name: str) -> bool:
    return "part_swap" in inspect.signature(poseprior.registry.prior_class(name).__init__).parameters


@pytest.mark.parametrize("name", [n for n in sorted(TINY_CONFIGS) if _has_part_swap(n)])
def test_part_swap_trains_on_limbs_of_other_poses(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prior with ``part_swap`` gives its training poses limbs of other poses (formats.swap_limbs,
    driven by fit's generator) in train mode only, and refuses a value that is no probability."""
    prior, x = fitted(name)
    module = sys.modules[type(prior)._training_loss.__module__]
    real, calls = module.swap_limbs, []

    def spy(poses: torch.Tensor, layout: Any, p: float, generator: Any = None) -> torch.Tensor:
        calls.append((poses.clone(), layout, p, generator))
        return real(poses, layout, p, generator)

    monkeypatch.setattr(module, "swap_limbs", spy)
    gen = torch.Generator().manual_seed(0)
    prior.part_swap = 1.0
    prior.train()
    prior.training_loss(x[:64], gen)
    assert len(calls) == 1
    poses, layout, p, generator = calls[0]
    assert torch.equal(poses, x[:64]) and layout == prior.layout and p == 1.0 and generator is gen
    prior.eval()
    prior.training_loss(x[:64], gen)  # evaluation: the poses as they are
    prior.train()
    prior.part_swap = 0.0
    prior.training_loss(x[:64], gen)
    assert len(calls) == 1
    config = TINY_CONFIGS[name][0]
    with pytest.raises(ValueError, match=r"part_swap must be a probability in \[0, 1\], got -0.1"):
        poseprior.create(name, **config, part_swap=-0.1)
