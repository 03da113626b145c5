r"""``PriorModule``: a thin LightningModule around any :class:`~poseprior.PosePrior`.

The module optimizes ``prior.training_loss`` — the same objective as ``prior.fit`` — and knows
nothing about any particular prior: flows, the VAE and the Gaussian go through the same code.
Extra diagnostics are used when a prior offers them (``round_trip`` for flows,
``reconstruction_error`` for the VAE).

**Randomness.** The module never seeds or changes the process's random state. A prior's
training loss may draw random numbers from torch's global generator (training noise, the VAE's
reparameterization). So that a resumed run reproduces an uninterrupted one exactly, every
training and validation step runs inside :func:`torch.random.fork_rng` with a seed derived from
``(seed, step, rank)``: the global RNG state is saved before the step and restored after it, so
nothing outside the step sees a difference. Evaluation samples are drawn with a CPU generator
seeded by ``seed``; by the rule of :mod:`poseprior._rng` they are the same on every device.

**EMA.** With ``ema_decay`` the module keeps an exponential moving average of the prior's
parameters (:class:`torch.optim.swa_utils.AveragedModel`, updated after every optimizer step; the
buffers follow the trained prior). Validation, sample statistics and the exports use the EMA
weights; a checkpoint holds both (``prior.*`` and ``ema.module.*``).

**Mixed precision.** Under Lightning's ``precision="bf16-mixed"`` or ``"16-mixed"`` the prior's
public methods turn autocast off: densities, log-determinants and the broad mixture are computed
in the prior's dtype (float32), because bf16 conditioner outputs move the NLL by tenths of a nat.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from .. import metrics
from ..base import PosePrior
from ..errors import FitDivergedError, NotInitializedError
from ..formats.layouts import BODY_JOINT_NAMES
from ..hub import checkpoint_record
from .checkpoints import CHECKPOINT_KEY, RUN_KEY

__all__ = ["PriorModule"]

log = logging.getLogger("poseprior.training")

_STAGE_TRAIN, _STAGE_VAL = 0, 1
_EVAL_SPLITS = ("val", "train")  # names of the validation loaders 0 and 1 (see PoseDataModule)
COLLAPSE_RATIO = 0.5
"""A warning is logged when the samples' APD falls below this fraction of the validation poses'."""


@contextlib.contextmanager
def _forked_rng(*parts: int) -> Iterator[None]:
    """Runs the block with the global RNG seeded from ``parts``, then restores the previous state."""
    # manual_seed also seeds every CUDA device that is initialized: fork (save/restore) them all.
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    seed = int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0])
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def diversity(prior: PosePrior, x: Tensor) -> Tensor:
    r"""Average pairwise distance of poses :math:`(N, J, 3)`, :math:`N \geq 2`: the APD of
    :func:`poseprior.metrics.apd` in cm when the layout holds the 21 body joints, else the mean
    pairwise Euclidean distance of the values in the density (radians)."""
    joints = prior.layout.joints
    if all(name in joints for name in BODY_JOINT_NAMES):
        body = x[:, [joints.index(name) for name in BODY_JOINT_NAMES]]
        return torch.tensor(metrics.apd(body), dtype=torch.float64)
    flat = x.reshape(x.shape[0], -1)[:, prior.present.to(x.device)].double()
    return torch.pdist(flat).mean()


class _Sums:
    """Per-split running sums of one validation epoch (reduced across processes at the end)."""

    def __init__(self) -> None:
        self.values: dict[str, Tensor] = {}

    def add(self, key: str, value: Tensor) -> None:
        value = value.detach().double()
        self.values[key] = self.values[key] + value if key in self.values else value.clone()


class PriorModule(pl.LightningModule):
    r"""Trains any :class:`~poseprior.PosePrior` on its own ``training_loss``.

    Logged every epoch (TensorBoard through Lightning's logger): ``train/loss`` (the objective,
    e.g. on noisy poses for the flows or :math:`-\mathrm{ELBO}` for the VAE), ``val/loss``,
    ``val/nll`` and ``val/bpd`` on the validation split, ``train/nll`` and ``train/bpd`` on a fixed
    training subset (clean poses, eval mode), ``val/round_trip_error`` for priors with a
    ``round_trip`` method, ``val/reconstruction_error`` for priors with ``reconstruction_error``,
    and, from ``num_eval_samples`` samples, ``sample/nll``, ``sample/mean_abs_err`` and
    ``sample/std_abs_err`` (mean absolute difference of the per-value mean and standard deviation of
    the samples and the validation poses, radians), ``sample/std_ratio`` and
    ``sample/min_std_ratio`` (mean and smallest per-value ratio of those standard deviations), and
    the collapse watch ``sample/apd``, ``val/apd`` (on as many evenly spaced validation poses) and
    ``sample/apd_ratio`` (see :func:`diversity`); a warning is logged when the ratio falls below
    :data:`COLLAPSE_RATIO`. NLL is in nats per pose; BPD is NLL / (D ln 2). For priors whose
    ``log_prob`` is an estimate (``has_exact_log_prob=False``) the NLL columns are estimates too.

    Arguments:
        prior: The prior, ready to train: initialized (``prior.initialize(train_poses)``), which
            decides its excluded and anatomical values.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_schedule: ``"cosine"`` (annealed to 0 over the planned steps, as in ``fit``) or
            ``"constant"``. A resumed run continues the schedule stored in its checkpoint.
        seed: Seed of the training randomness inside the prior's loss and of the evaluation
            samples; the process's RNG state is never changed (see the module docs).
        num_eval_samples: Samples drawn at every validation for the sample statistics (0: none).
        ema_decay: Keep an exponential moving average of the weights with this decay in (0, 1)
            for validation and export (``None``: no EMA).
        run_options: The run's options, stored in every checkpoint (``checkpoint["poseprior_run"]``).

    Example:
        >>> import poseprior
        >>> prior = poseprior.create("gaussian", layout="left_hand")
        >>> prior.initialize(0.1 * torch.randn(64, 15, 3, generator=torch.Generator().manual_seed(0)))
        >>> module = PriorModule(prior, lr=1e-2)
        >>> module.hparams.prior
        'gaussian'
    """

    def __init__(
        self,
        prior: PosePrior,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["cosine", "constant"] = "constant",
        seed: int = 0,
        num_eval_samples: int = 256,
        ema_decay: float | None = None,
        run_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(prior, PosePrior):
            raise TypeError(f"PriorModule: expected a PosePrior, got {type(prior).__name__}")
        if lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"PriorModule: lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
        if num_eval_samples < 0:
            raise ValueError(f"PriorModule: num_eval_samples must be >= 0, got {num_eval_samples}")
        if ema_decay is not None and not (isinstance(ema_decay, float) and 0.0 < ema_decay < 1.0):
            raise ValueError(f"PriorModule: ema_decay must be a number in (0, 1) or None, got {ema_decay!r}")
        self.prior = prior
        self.save_hyperparameters(ignore=["prior", "run_options"])
        self.hparams["prior"] = prior.name  # for the TensorBoard hparams view; config: on_save_checkpoint
        self.run_options = dict(run_options or {})
        self.ema: torch.optim.swa_utils.AveragedModel | None = None
        if ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            # use_buffers=False: buffers are copied from the prior (the bool ones cannot be averaged).
            self.ema = AveragedModel(prior, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=False)
            self.ema.requires_grad_(False)
        self._sums: dict[str, _Sums] = {}
        self._round_trip: Tensor | None = None
        self._val_apd: Tensor | None = None

    @property
    def eval_prior(self) -> PosePrior:
        """The prior validated and exported: the EMA weights if kept, else the trained prior."""
        return self.ema.module if self.ema is not None else self.prior

    # ------------------------------------------------------------------ checks
    def setup(self, stage: str) -> None:
        """Refuses a prior whose architecture is not fixed yet (before the optimizer is built)."""
        if stage != "fit":
            return
        name = type(self.prior).__name__
        if self.prior.exclude is None or self.prior.anatomical is None:
            raise ValueError(
                f"PriorModule: the {name}'s excluded and anatomical values are not decided yet, so its "
                "parameter shapes could still change; call prior.initialize(train_poses) before "
                "Trainer.fit (poseprior.training.train does this)"
            )
        if not bool(self.prior.initialized):
            raise NotInitializedError(
                f"PriorModule: the {name} needs a data-dependent initialization; call "
                "prior.initialize(train_poses) before Trainer.fit (poseprior.training.train does this)"
            )

    # ------------------------------------------------------------------ training
    def _batch(self, batch: Tensor | Sequence[Tensor]) -> Tensor:
        x = batch if isinstance(batch, Tensor) else batch[0]
        return x.to(self.prior.data_mean.dtype)

    def _rng(self, stage: int, step: int) -> contextlib.AbstractContextManager[None]:
        return _forked_rng(int(self.hparams.seed), stage, step, self.global_rank)

    def training_step(self, batch: Tensor | Sequence[Tensor], batch_idx: int) -> Tensor:
        x = self._batch(batch)
        with self._rng(_STAGE_TRAIN, self.global_step):
            loss = self.prior.training_loss(x)
        if not bool(torch.isfinite(loss)):  # the data were checked finite: the optimization diverged
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
            raise FitDivergedError(
                f"training diverged: the training loss is {loss.item()} at epoch {self.current_epoch + 1}, "
                f"step {self.global_step} (learning rate {lr:.3g}). The data was checked finite, so the "
                "optimization is unstable: lower --lr (e.g. by 10x), raise --batch-size or set --grad-clip. "
                "last.ckpt holds the last completed epoch."
            )
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=x.shape[0],
            sync_dist=True,
        )
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is None:
            return
        self.ema.update_parameters(self.prior)
        with torch.no_grad():
            for mine, theirs in zip(self.ema.module.buffers(), self.prior.buffers(), strict=True):
                mine.copy_(theirs)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.prior.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"PriorModule: {type(self.prior).__name__} has no trainable parameters")
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "constant":
            return opt
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(
                "PriorModule: lr_schedule='cosine' needs max_epochs or max_steps; use 'constant'"
            )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        # A resumed cosine schedule keeps the T_max of the run that wrote the checkpoint; past it the
        # cosine rises again, so training longer than first planned deserves a warning.
        if self.hparams.lr_schedule != "cosine":
            return
        sched = self.lr_schedulers()
        planned = self.trainer.estimated_stepping_batches
        if sched is not None and math.isfinite(planned) and int(sched.T_max) < int(planned):
            pl.utilities.rank_zero_warn(
                f"the cosine learning-rate schedule restored from the checkpoint spans {sched.T_max} steps "
                f"but this run plans {int(planned)}; past the end the rate rises again. To train longer "
                "than first planned, start a new stage (init_from) or use lr_schedule='constant'"
            )

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._sums = {s: _Sums() for s in _EVAL_SPLITS}
        self._round_trip = None

    def validation_step(
        self, batch: Tensor | Sequence[Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        x = self._batch(batch)
        prior = self.eval_prior
        split = (
            _EVAL_SPLITS[dataloader_idx] if dataloader_idx < len(_EVAL_SPLITS) else f"eval{dataloader_idx}"
        )
        sums = self._sums.setdefault(split, _Sums())
        n = x.new_tensor(float(x.shape[0]))
        with self._rng(_STAGE_VAL, 1_000_000 * dataloader_idx + batch_idx):
            sums.add("count", n)
            sums.add("nll", -prior.log_prob(x).sum())
            if split != "val":
                return
            sums.add("loss", prior.training_loss(x) * n)
            flat = x.reshape(x.shape[0], -1)
            sums.add("sum", flat.sum(0))
            sums.add("sumsq", flat.pow(2).sum(0))
            if hasattr(prior, "reconstruction_error"):
                err = torch.as_tensor(prior.reconstruction_error(x), dtype=torch.float64, device=x.device)
                sums.add("rec", err.mean() * n)
            if batch_idx == 0 and hasattr(prior, "round_trip"):
                # Inverting an autoregressive flow costs D passes: a few dozen poses suffice.
                self._round_trip = x.new_tensor(metrics.round_trip_error(prior, x[:64]))

    def _reduce(self, value: Tensor, op: str = "sum") -> Tensor:
        if self.trainer.world_size == 1:
            return value
        if op == "max":
            return self.all_gather(value).max()
        return self.trainer.strategy.reduce(value, reduce_op="sum")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        d = self.prior.dim
        logged: dict[str, Tensor] = {}
        for split, sums in self._sums.items():
            if "count" not in sums.values:
                continue
            count = self._reduce(sums.values["count"])
            nll = self._reduce(sums.values["nll"]) / count
            logged[f"{split}/nll"] = nll
            logged[f"{split}/bpd"] = nll / (d * math.log(2.0))
            if "loss" in sums.values:
                logged[f"{split}/loss"] = self._reduce(sums.values["loss"]) / count
            if "rec" in sums.values:
                logged[f"{split}/reconstruction_error"] = self._reduce(sums.values["rec"]) / count
        if self._round_trip is not None or (
            hasattr(self.prior, "round_trip") and self.trainer.world_size > 1
        ):
            # Every rank must join the collective, even one whose shard was empty.
            rt = self._round_trip if self._round_trip is not None else torch.zeros((), device=self.device)
            logged["val/round_trip_error"] = self._reduce(rt.to(self.device, torch.float64), "max")
        val = self._sums.get("val")
        if self.hparams.num_eval_samples > 0 and val is not None and "sum" in val.values:
            logged.update(self._sample_statistics(val))
        for key, value in logged.items():
            self.log(key, value.float(), prog_bar=key == "val/nll", sync_dist=True)
        self._watch_collapse(logged)

    def _sample_statistics(self, val: _Sums) -> dict[str, Tensor]:
        prior = self.eval_prior
        count = self._reduce(val.values["count"])
        mean = self._reduce(val.values["sum"]) / count
        std = (self._reduce(val.values["sumsq"]) / count - mean.pow(2)).clamp_min(0.0).sqrt()
        n = int(self.hparams.num_eval_samples)
        # The same seed every epoch: the statistics then change only because the prior does. A CPU
        # generator drives a prior on any device (poseprior._rng), so every device draws the same.
        samples = prior.sample(n, generator=torch.Generator().manual_seed(int(self.hparams.seed)))
        with self._rng(_STAGE_VAL, 2_000_000):
            sample_nll = -prior.log_prob(samples).mean()
        flat = samples.reshape(n, -1).double()
        m = prior.present.to(flat.device)
        ratio = (flat.std(0) / std.clamp_min(1e-12))[m]
        out = {
            "sample/nll": sample_nll.double(),
            "sample/mean_abs_err": (flat.mean(0) - mean)[m].abs().mean(),
            "sample/std_abs_err": (flat.std(0) - std)[m].abs().mean(),
            "sample/std_ratio": ratio.mean(),
            "sample/min_std_ratio": ratio.min(),
        }
        reference = self._val_reference(n)
        if n >= 2 and reference is not None:
            if self._val_apd is None:
                self._val_apd = diversity(prior, reference).to(self.device)
            out["sample/apd"] = diversity(prior, samples).to(self.device)
            out["val/apd"] = self._val_apd
            out["sample/apd_ratio"] = out["sample/apd"] / self._val_apd.clamp_min(1e-12)
        return out

    def _val_reference(self, n: int) -> Tensor | None:
        """``n`` evenly spaced validation poses (of the whole split, on every rank) or None."""
        val = getattr(getattr(self.trainer, "datamodule", None), "val_poses", None)
        if not isinstance(val, Tensor) or val.shape[0] < 2:
            return None
        idx = torch.linspace(0, val.shape[0] - 1, min(n, val.shape[0])).round().long()
        return val[idx].to(self.device, self.prior.data_mean.dtype)

    def _watch_collapse(self, logged: dict[str, Tensor]) -> None:
        ratio = logged.get("sample/apd_ratio")
        if ratio is None or not self.trainer.is_global_zero or float(ratio) >= COLLAPSE_RATIO:
            return
        log.warning(
            "epoch %d: the samples' APD %.3g is %.0f%% of the validation poses' %.3g (below %.0f%%): "
            "the prior may be collapsing onto a few poses; check sample/min_std_ratio, lower the learning "
            "rate, or keep an earlier checkpoint",
            self.trainer.current_epoch + 1,
            float(logged["sample/apd"]),
            100 * float(ratio),
            float(logged["val/apd"]),
            100 * COLLAPSE_RATIO,
        )

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The config is read now, not at __init__: the first initialize() may have changed it
        # (the excluded values), and the architecture in the checkpoint is the current one.
        checkpoint[CHECKPOINT_KEY] = checkpoint_record(self.prior)
        checkpoint[RUN_KEY] = {"options": dict(self.run_options), "epochs_done": int(self.current_epoch) + 1}
