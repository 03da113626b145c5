"""Issue 16's precision and speed options: float32 densities under autocast, compile(), EMA weights,
gradient clipping, DataLoader workers, and the collapse watch."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from contract import TINY_CONFIGS, fitted
from torch._dynamo.testing import CompileCounterWithBackend
from training_common import FILTERS, data_folder, datamodule, flow, quick, ready, same_weights

import poseprior

pytest.importorskip("pytorch_lightning")

from poseprior.training import PriorModule, build_trainer, prior_from_checkpoint, train  # noqa: E402

pytestmark = [pytest.mark.filterwarnings(*FILTERS), pytest.mark.usefixtures("one_thread")]
names = pytest.mark.parametrize("name", sorted(TINY_CONFIGS))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data_folder(tmp_path_factory.mktemp("precision") / "data")


# ---------------------------------------------------------------------------- autocast
@names
def test_densities_stay_float32_under_autocast(name: str) -> None:
    """Under bf16 autocast (what --precision bf16-mixed runs in) every density is the float32 one."""
    prior, data = fitted(name, torch.float32)
    x = data[:64]
    with torch.no_grad():
        lp = prior.log_prob(x)
        prior.train()
        loss = prior.training_loss(x, generator=torch.Generator().manual_seed(0))
        prior.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto_lp = prior.log_prob(x)
            prior.train()
            auto_loss = prior.training_loss(x, generator=torch.Generator().manual_seed(0))
            prior.eval()
            s, s_lp = prior.sample_and_log_prob(8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(auto_lp, lp, rtol=0, atol=0)
    torch.testing.assert_close(auto_loss, loss, rtol=0, atol=0)
    assert s.dtype == s_lp.dtype == torch.float32
    torch.testing.assert_close(s_lp, prior.log_prob(s), rtol=1e-5, atol=1e-4)


def test_bf16_mixed_training_matches_float32(data: Path, tmp_path: Path) -> None:
    dm = datamodule(data)
    nll = {}
    for precision in ("32", "bf16-mixed"):
        result = train(flow(dm), dm, root=tmp_path, run=precision, max_epochs=2, lr=1e-2, precision=precision,
                       **quick())  # fmt: skip
        nll[precision] = result.metrics["val/nll"]
        assert result.trainer.precision == {"32": "32-true"}.get(precision, precision)
    assert abs(nll["bf16-mixed"] - nll["32"]) < 0.05, nll


# ---------------------------------------------------------------------------- compile
@names
def test_compiled_and_eager_agree(name: str) -> None:
    prior, data = fitted(name, torch.float32)
    x = data[:32].clone().requires_grad_(True)
    compiled = copy.deepcopy(prior)
    counter = CompileCounterWithBackend("aot_eager")
    assert compiled.compile(backend=counter) is compiled
    for p in (prior, compiled):
        p.zero_grad()
    lp, clp = prior.log_prob(x), compiled.log_prob(x)
    (gx,) = torch.autograd.grad(lp.sum(), x)
    (cgx,) = torch.autograd.grad(clp.sum(), x)
    prior.train(), compiled.train()
    loss = prior.training_loss(x.detach(), generator=torch.Generator().manual_seed(0))
    closs = compiled.training_loss(x.detach(), generator=torch.Generator().manual_seed(0))
    loss.backward(), closs.backward()
    assert counter.frame_count >= 1  # torch.compile really ran
    torch.testing.assert_close(clp, lp)
    torch.testing.assert_close(cgx, gx)
    torch.testing.assert_close(closs, loss)
    for (k, a), b in zip(prior.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, msg=k)
    assert compiled.compile(enabled=False) is compiled
    frames = counter.frame_count
    compiled.log_prob(x)
    assert counter.frame_count == frames  # eager again


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning"
)  # (inside torch's inductor)
@names
def test_compiled_with_inductor_agrees(name: str) -> None:
    """The default backend (C++ code generation on CPU): tens of seconds per prior."""
    prior, data = fitted(name, torch.float32)
    compiled = copy.deepcopy(prior).compile()
    with torch.no_grad():
        torch.testing.assert_close(
            compiled.log_prob(data[:64]), prior.log_prob(data[:64]), rtol=1e-5, atol=1e-4
        )


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_a_copy_of_a_compiled_prior_uses_its_own_weights(name: str) -> None:
    prior, data = fitted(name, torch.float32)
    prior.compile(backend="eager")
    twin = copy.deepcopy(prior)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(1.1)
    # With gradients on (training, the EMA's validation under autocast...): the plain density path.
    expected = copy.deepcopy(twin).compile(enabled=False).log_prob(data[:8])
    torch.testing.assert_close(twin.log_prob(data[:8]), expected)


# ---------------------------------------------------------------------------- EMA
def test_ema_follows_the_decay_formula() -> None:
    prior = poseprior.create("gaussian", layout="left_hand", covariance="diagonal", broad_weight=0.0)
    prior.initialize(0.1 * torch.randn(64, 15, 3, generator=torch.Generator().manual_seed(0)))
    module = PriorModule(prior, ema_decay=0.75)
    with torch.no_grad():
        prior.loc.fill_(1.0)
    module.on_train_batch_end(None, None, 0)  # the first update copies
    with torch.no_grad():
        prior.loc.fill_(3.0)
    module.on_train_batch_end(None, None, 1)
    torch.testing.assert_close(module.eval_prior.loc, torch.full_like(prior.loc, 0.75 * 1.0 + 0.25 * 3.0))
    assert module.eval_prior is not prior and not any(p.requires_grad for p in module.ema.parameters())
    with pytest.raises(ValueError, match=r"ema_decay must be a number in \(0, 1\)"):
        PriorModule(prior, ema_decay=1.0)


def test_ema_weights_are_validated_and_exported(data: Path, tmp_path: Path) -> None:
    dm = datamodule(data)
    result = train(flow(dm), dm, root=tmp_path, run="ema", max_epochs=2, lr=1e-2, ema=0.9, **quick())
    run = tmp_path / "checkpoints" / "ema"
    final = poseprior.load(run / "final")
    raw = prior_from_checkpoint(run / "last.ckpt", ema=False)
    assert same_weights(final, prior_from_checkpoint(run / "last.ckpt")) and same_weights(final, result.prior)
    assert not same_weights(final, raw)
    nll = poseprior.metrics.nll(final, dm.val_poses)
    assert result.metrics["val/nll"] == pytest.approx(nll, abs=1e-3)  # validation used the EMA weights
    assert poseprior.metrics.nll(raw, dm.val_poses) != pytest.approx(nll, abs=1e-4)
    train(flow(dm), dm, root=tmp_path, run="plain", max_epochs=1, **quick())
    with pytest.raises(poseprior.CheckpointError, match="holds no EMA weights"):
        prior_from_checkpoint(tmp_path / "checkpoints" / "plain" / "last.ckpt", ema=True)


# ---------------------------------------------------------------------------- clipping, workers
def test_grad_clip_and_workers(data: Path, tmp_path: Path) -> None:
    assert build_trainer(root=tmp_path, gradient_clip_val=0.5, accelerator="cpu").gradient_clip_val == 0.5
    assert build_trainer(root=tmp_path, gradient_clip_val=0.0, accelerator="cpu").gradient_clip_val is None
    kw = quick(root=tmp_path, max_epochs=1, lr=1e-2)
    a = train(flow(dm := datamodule(data)), dm, run="w0", **kw)
    b = train(flow(dm1 := datamodule(data, num_workers=1)), dm1, run="w1", **kw)
    assert same_weights(a.prior, b.prior)  # a worker process serves the same batches
    clipped = train(flow(dm), dm, run="clip", grad_clip=1e-3, **kw)
    assert not same_weights(a.prior, clipped.prior)


# ---------------------------------------------------------------------------- collapse watch
def test_collapse_is_logged_and_warned(data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = datamodule(data)
    prior = ready("gaussian", dm, broad_weight=0.0, anatomical=[])  # every value learned, none anatomical
    prior.fit(dm.train_poses)
    trainer = build_trainer(root=tmp_path, accelerator="cpu")
    with caplog.at_level(logging.WARNING, logger="poseprior.training"):
        trainer.validate(PriorModule(prior, num_eval_samples=64), datamodule=dm, verbose=False)
    healthy = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert 0.5 < healthy["sample/apd_ratio"] < 2.0 and healthy["val/apd"] > 1.0  # cm, body joints
    assert "collapsing" not in caplog.text
    with torch.no_grad():
        prior.scale_tril.mul_(0.01)  # every sample near the mean: a collapsed prior
    with caplog.at_level(logging.WARNING, logger="poseprior.training"):
        trainer.validate(PriorModule(prior, num_eval_samples=64), datamodule=dm, verbose=False)
    collapsed = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert collapsed["sample/apd_ratio"] < 0.5 and collapsed["sample/min_std_ratio"] < 0.5
    assert collapsed["val/apd"] == pytest.approx(healthy["val/apd"])
    assert "the prior may be collapsing" in caplog.text


def test_diversity_outside_the_body_is_the_mean_pairwise_distance_of_the_values() -> None:
    from poseprior.training.module import diversity

    prior, data = fitted("gaussian", torch.float64)  # left_hand: no body joints
    x = data[:20]
    expected = torch.cdist(x.reshape(20, -1), x.reshape(20, -1)).sum() / (20 * 19)
    torch.testing.assert_close(diversity(prior, x), expected)
    body = poseprior.create("gaussian")
    y = 0.2 * torch.randn(10, 21, 3, generator=torch.Generator().manual_seed(0))
    assert float(diversity(body, y)) == pytest.approx(poseprior.metrics.apd(y))
