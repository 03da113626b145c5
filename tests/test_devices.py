"""The one rule for random draws (``poseprior/_rng.py``): drawn on the generator's device, then moved
to the prior's. Run with ``--device cuda`` where there is one (the default is ``--device cpu``).

The ``meta`` device exercises the rule itself (a CPU generator driving draws for a ``meta`` tensor),
but not whole priors: their value masks (excluded / anatomical / learned) select values with
boolean indexing, whose result shape depends on the data, which ``meta`` tensors do not hold.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from contract import TINY_CONFIGS, fitted

from poseprior._rng import rand, randn

ROOT = Path(__file__).resolve().parents[1] / "poseprior"
names = pytest.mark.parametrize("name", sorted(TINY_CONFIGS))

# Random calls that take a generator= and are not the user's draws, so the rule does not apply:
# (file, function) -> why.
LOCAL_GENERATORS = {
    ("priors/global_flow.py", "_initialize"): "its own CPU generator, the noise moved to the data's device",
    ("priors/_vae.py", "_bound"): "its own generator on the prior's device (the log_prob estimate's draws)",
    ("nn/flows.py", "random"): "a permutation drawn at construction, on the CPU",
    ("nn/joint_net.py", "__init__"): "initial weights drawn at construction, on the CPU",
    ("nn/mlp.py", "_linear"): "initial weights drawn at construction, on the CPU (the VAEs' seed)",
}  # fmt: skip
RANDOM = {
    "randn", "rand", "randint", "randperm", "normal", "bernoulli", "multinomial", "poisson",
    "normal_", "uniform_", "random_", "exponential_", "bernoulli_", "cauchy_", "log_normal_", "geometric_",
}  # fmt: skip


def test_rng_draws_on_the_generator_device_and_returns_on_the_tensor_device() -> None:
    like = torch.zeros(2, dtype=torch.float64, device="meta")
    gen = torch.Generator().manual_seed(0)  # a CPU generator for a tensor on another device
    for draw in (randn, rand):
        out = draw((3, 4), gen, like)
        assert out.shape == (3, 4) and out.dtype == torch.float64 and out.device.type == "meta"
        assert draw((3, 4), None, like).device.type == "meta"  # no generator: the tensor's device
    # The same seeded CPU generator gives the same values, whatever the target device.
    cpu = torch.zeros(1, dtype=torch.float32)
    expected = torch.randn(5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(randn((5,), torch.Generator().manual_seed(3), cpu), expected, rtol=0, atol=0)


def _random_calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """(enclosing function, call) for every call of a random function with a generator= keyword."""
    found = []
    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for call in [n for n in ast.walk(fn) if isinstance(n, ast.Call)]:
            name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            if name in RANDOM and any(k.arg == "generator" for k in call.keywords):
                found.append((fn.name, call))
    return found


def test_every_draw_with_a_generator_follows_the_rule() -> None:
    """Priors, their modules and the base class draw through ``poseprior._rng`` (or a local generator
    of their own, listed above with why): a draw made on the prior's device with the caller's
    generator fails for a CUDA prior and a CPU generator (issue 16)."""
    files = [ROOT / "base.py", *sorted((ROOT / "priors").glob("*.py")), *sorted((ROOT / "nn").glob("*.py"))]
    offenders, used = [], set()
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for function, call in _random_calls(ast.parse(path.read_text())):
            if (rel, function) in LOCAL_GENERATORS:
                used.add((rel, function))
            else:
                offenders.append(f"{rel}:{call.lineno} in {function}")
    assert not offenders, f"draw through poseprior._rng.randn/rand instead: {offenders}"
    assert used == set(LOCAL_GENERATORS), f"stale exceptions: {set(LOCAL_GENERATORS) - used}"


@names
def test_a_cpu_generator_drives_a_prior_on_the_test_device(name: str, device: torch.device) -> None:
    """Sampling, sample_and_log_prob and the training loss on ``--device`` with a CPU generator: the
    same draws as on the CPU (``pytest --device cuda`` checks the rule across devices)."""
    prior, data = fitted(name, torch.float64, device=device)
    reference, _ = fitted(name, torch.float64)
    for shape, expected in ((7, (7,)), ((2, 3), (2, 3))):
        s = prior.sample(shape, generator=torch.Generator().manual_seed(5))
        assert (
            s.shape == (*expected, *prior.event_shape)
            and s.device == data.device
            and s.dtype == torch.float64
        )
        again = reference.sample(shape, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(s.cpu(), again)
    x, lp = prior.sample_and_log_prob(6, generator=torch.Generator().manual_seed(6))
    assert x.device == lp.device == data.device and lp.shape == (6,)
    prior.train()
    loss = prior.training_loss(data[:16], generator=torch.Generator().manual_seed(7))
    assert loss.device == data.device and torch.isfinite(loss)
