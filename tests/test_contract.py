"""The contract every registered prior passes, on tiny configurations (zuko's test_flows style)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import synthetic_poses
from contract import (
    assert_excluded_values_constant,
    assert_log_prob_shapes,
    assert_sample_shapes,
    integral_estimate,
)

import poseprior
from poseprior import CheckpointError, JointLayout, NotInitializedError, ShapeError, ValueCheckError
from poseprior.hub import CHECKPOINT_FORMAT

# name -> (constructor kwargs, fit options). Every registered prior must appear here.
TINY_CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "gaussian": ({"layout": "left_hand"}, {}),
    "global_flow": (
        {"layout": "left_hand", "blocks": 2, "hidden_features": 16, "residual_blocks": 1},
        {"epochs": 15, "batch_size": 100},
    ),
    "hand_vae": (
        {"layout": "left_hand", "latent_dim": 4, "hidden_features": 32, "num_layers": 2, "num_samples": 16},
        {"epochs": 40, "batch_size": 100},
    ),
    "joint_flow": ({"layout": "left_hand", "num_bins": 4, "hidden": 16, "layers": 1}, {"epochs": 3, "batch_size": 100}),
}

ONE_JOINT = JointLayout("one_joint", ("left_elbow",), (-1,))


def _data(layout: str | JointLayout, n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    joints = len(poseprior.get_layout(layout))
    x = synthetic_poses(n, joints, torch.Generator().manual_seed(seed), dtype)
    x[:, 0, 2] = 0.25  # a constant value: must be excluded from the density
    return x


def _fitted(name: str, dtype: torch.dtype, layout: str | JointLayout | None = None, n: int = 600) -> tuple:
    kwargs, fit_opts = TINY_CONFIGS[name]
    kwargs = dict(kwargs, **({"layout": layout} if layout is not None else {}))
    prior = poseprior.create(name, **kwargs).to(dtype)
    data = _data(prior.layout, n, 1, dtype)
    prior.fit(data, generator=torch.Generator().manual_seed(2), **fit_opts)
    return prior, data


names = pytest.mark.parametrize("name", sorted(TINY_CONFIGS))


def test_registry_is_covered() -> None:
    assert set(poseprior.list_priors()) == set(TINY_CONFIGS)


@names
def test_shapes_and_description(name: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    prior, data = _fitted(name, dtype)
    assert prior.event_shape == (len(prior.layout), 3)
    assert prior.dim == 3 * len(prior.layout) - 1  # the constant value is excluded
    assert prior.excluded_names() == [f"{prior.layout.joints[0]}.z"]
    assert isinstance(prior.has_exact_log_prob, bool) and prior.space.startswith("axis_angle:")
    assert_log_prob_shapes(prior, data)
    assert_sample_shapes(prior, gen)
    assert_excluded_values_constant(prior, prior.sample(20, generator=gen), data)


@names
def test_finite_and_differentiable(name: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    prior, data = _fitted(name, dtype)
    samples = prior.sample(50, generator=gen)
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
def test_train_eval_equivalence(name: str, dtype: torch.dtype) -> None:
    prior, data = _fitted(name, dtype)
    prior.train()
    a = prior.log_prob(data[:20])
    prior.eval()
    b = prior.log_prob(data[:20])
    torch.testing.assert_close(a, b)


@names
def test_normalization_on_one_joint(name: str, dtype: torch.dtype, gen: torch.Generator) -> None:
    prior, _ = _fitted(name, dtype, layout=ONE_JOINT, n=2000)
    # One joint with its z value constant leaves D = 2: integrate over the modelled plane.
    samples = prior.sample(4000, generator=gen)
    total = integral_estimate(prior, samples, 200_000, gen)
    assert 0.9 < total < 1.1, total


@names
def test_fit_improves_held_out_nll(name: str, dtype: torch.dtype) -> None:
    kwargs, fit_opts = TINY_CONFIGS[name]
    prior = poseprior.create(name, **kwargs).to(dtype)
    both = _data(prior.layout, 1000, 1, dtype)  # one distribution: train on 800, hold out 200
    data, held_out = both[:800], both[800:]
    if prior.requires_initialization:
        with pytest.raises(NotInitializedError, match="call .fit"):
            prior.log_prob(held_out)
        prior.initialize(data)
    else:
        prior._resolve_constants(data)
    before = -prior.log_prob(held_out).mean()
    assert prior.fit(data, generator=torch.Generator().manual_seed(3), **fit_opts) is prior
    after = -prior.log_prob(held_out).mean()
    assert after < before


@names
def test_sampling_is_reproducible_with_generator(name: str, dtype: torch.dtype) -> None:
    prior, _ = _fitted(name, dtype)
    a = prior.sample(5, generator=torch.Generator().manual_seed(7))
    torch.rand(100)  # move the global RNG
    state = torch.get_rng_state()
    b = prior.sample(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state()), "sampling with a generator used the global RNG"


@names
def test_save_load_roundtrip(name: str, dtype: torch.dtype, tmp_path: Path) -> None:
    prior, data = _fitted(name, dtype)
    prior.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = poseprior.load(tmp_path / "ckpt")
    assert type(loaded) is type(prior) and loaded.get_config() == prior.get_config()
    torch.testing.assert_close(loaded.to(dtype).log_prob(data[:10]), prior.eval().log_prob(data[:10]))
    assert type(prior).load(tmp_path / "ckpt").dim == prior.dim


@names
def test_checkpoint_errors(name: str, tmp_path: Path) -> None:
    prior, _ = _fitted(name, torch.float32)
    ckpt = prior.save(tmp_path / "ckpt")
    other = next(n for n in ["gaussian", *poseprior.list_priors()] if n != name) if len(poseprior.list_priors()) > 1 else None
    if other is not None:
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
    prior, data = _fitted(name, torch.float32)
    j, lname = len(prior.layout), prior.layout.name
    with pytest.raises(ShapeError, match=rf"expected shape \(\*batch, {j}, 3\).*layout '{lname}'.*got \(4, {j + 1}, 3\)"):
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
    before = data.clone()
    prior.log_prob(data)
    assert torch.equal(data, before), "log_prob modified its input"


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


def test_finite_values_whose_sum_overflows_are_accepted() -> None:
    # The NaN/inf check sums first; a sum that overflows falls back to the per-element check.
    from poseprior._checks import check_pose

    x = torch.full((2, 1, 3), 3e38)
    assert check_pose(x, ONE_JOINT, "here") is x
    x[1, 0, 2] = float("inf")
    with pytest.raises(ValueCheckError, match=r"NaN or inf \(first bad flattened batch indices: \[1\]\)"):
        check_pose(x, ONE_JOINT, "here")
