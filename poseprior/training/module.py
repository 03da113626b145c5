r"""``PriorModule``: a thin LightningModule around any :class:`~poseprior.PosePrior`, and a ``train`` driver.

The module optimizes ``prior.training_loss`` — the same objective as ``prior.fit`` — and knows
nothing about any particular prior: flows, the VAE and the Gaussian go through the same code.
Extra diagnostics are used when a prior offers them (``round_trip`` for flows,
``reconstruction_error`` for the VAE).

**Randomness.** The module never seeds or changes the process's random state. A prior's
training loss may draw random numbers from torch's global generator (training noise, the VAE's
reparameterization). So that a resumed run reproduces an uninterrupted one exactly, every
training and validation step runs inside :func:`torch.random.fork_rng` with a seed derived from
``(seed, step, rank)``: the global RNG state is saved before the step and restored after it, so
nothing outside the step sees a difference.

**Checkpoints.** Lightning's ``.ckpt`` files (pickles) are training state, for ``--resume`` only.
They also record the prior's name and its current ``get_config()`` (``checkpoint["poseprior"]``),
so :func:`prior_from_checkpoint` can rebuild the :class:`~poseprior.PosePrior` from one. What is
shared is ``prior.save(dir)``: :func:`train` exports ``checkpoints/<run>/final/`` (the last epoch)
and ``checkpoints/<run>/best/`` (the epoch with the lowest validation NLL), each a
``config.json`` + ``model.safetensors`` folder that :func:`poseprior.load` reads.

**Before training,** the prior's architecture must be fixed: its excluded and anatomical values
decide the learned ones and with them the shapes of the parameters, and priors with
``requires_initialization`` (ActNorm) need their data-dependent initialization. :func:`train`
calls ``prior.initialize(train_poses)`` before ``Trainer.fit``; :class:`PriorModule` refuses a
prior that is not ready instead of letting the optimizer see parameters that would be rebuilt.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from .. import metrics
from ..base import PosePrior
from ..errors import CheckpointError, NotInitializedError
from ..hub import MAX_PARAMETERS, build_prior, checkpoint_record
from .data import PoseDataModule

__all__ = [
    "PriorModule",
    "StopAfterEpochs",
    "TrainResult",
    "build_trainer",
    "checkpoint_config",
    "export_checkpoint",
    "prior_from_checkpoint",
    "train",
]

log = logging.getLogger("poseprior.training")

CHECKPOINT_KEY = "poseprior"
"""Key of a Lightning checkpoint holding the prior's name, version and config."""

_STAGE_TRAIN, _STAGE_VAL = 0, 1
_EVAL_SPLITS = ("val", "train")  # names of the validation loaders 0 and 1 (see PoseDataModule)


@contextlib.contextmanager
def _forked_rng(*parts: int) -> Iterator[None]:
    """Runs the block with the global RNG seeded from ``parts``, then restores the previous state."""
    # manual_seed also seeds every CUDA device that is initialized: fork (save/restore) them all.
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    seed = int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0])
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


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
    and sample statistics: ``sample/nll``, ``sample/mean_abs_err`` and ``sample/std_abs_err``
    (mean absolute difference of the per-value mean and standard deviation of
    ``num_eval_samples`` samples and of the validation poses, over the values in the density, in
    radians). NLL is in nats per pose; BPD is NLL / (D ln 2). For priors whose ``log_prob`` is an
    estimate (``has_exact_log_prob=False``) the NLL columns are estimates too.

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
    ) -> None:
        super().__init__()
        if not isinstance(prior, PosePrior):
            raise TypeError(f"PriorModule: expected a PosePrior, got {type(prior).__name__}")
        if lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"PriorModule: lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
        if num_eval_samples < 0:
            raise ValueError(f"PriorModule: num_eval_samples must be >= 0, got {num_eval_samples}")
        self.prior = prior
        self.save_hyperparameters(ignore=["prior"])
        self.hparams["prior"] = prior.name  # for the TensorBoard hparams view; config: on_save_checkpoint
        self._sums: dict[str, _Sums] = {}
        self._round_trip: Tensor | None = None

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
                "than first planned, start a new run or use lr_schedule='constant'"
            )

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._sums = {s: _Sums() for s in _EVAL_SPLITS}
        self._round_trip = None

    def validation_step(
        self, batch: Tensor | Sequence[Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        x = self._batch(batch)
        split = (
            _EVAL_SPLITS[dataloader_idx] if dataloader_idx < len(_EVAL_SPLITS) else f"eval{dataloader_idx}"
        )
        sums = self._sums.setdefault(split, _Sums())
        n = x.new_tensor(float(x.shape[0]))
        with self._rng(_STAGE_VAL, 1_000_000 * dataloader_idx + batch_idx):
            sums.add("count", n)
            sums.add("nll", -self.prior.log_prob(x).sum())
            if split != "val":
                return
            sums.add("loss", self.prior.training_loss(x) * n)
            flat = x.reshape(x.shape[0], -1)
            sums.add("sum", flat.sum(0))
            sums.add("sumsq", flat.pow(2).sum(0))
            if hasattr(self.prior, "reconstruction_error"):
                err = torch.as_tensor(
                    self.prior.reconstruction_error(x), dtype=torch.float64, device=x.device
                )
                sums.add("rec", err.mean() * n)
            if batch_idx == 0 and hasattr(self.prior, "round_trip"):
                # Inverting an autoregressive flow costs D passes: a few dozen poses suffice.
                self._round_trip = x.new_tensor(metrics.round_trip_error(self.prior, x[:64]))

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

    def _sample_statistics(self, val: _Sums) -> dict[str, Tensor]:
        count = self._reduce(val.values["count"])
        mean = self._reduce(val.values["sum"]) / count
        var = (self._reduce(val.values["sumsq"]) / count - mean.pow(2)).clamp_min(0.0)
        n = int(self.hparams.num_eval_samples)
        # The same seed every epoch: the statistics then change only because the prior does.
        try:
            samples = self.prior.sample(n, generator=torch.Generator().manual_seed(int(self.hparams.seed)))
        except RuntimeError:  # a prior sampling on an accelerator may need a generator on that device
            gen = torch.Generator(device=self.device).manual_seed(int(self.hparams.seed))
            samples = self.prior.sample(n, generator=gen)
        with self._rng(_STAGE_VAL, 2_000_000):
            sample_nll = -self.prior.log_prob(samples).mean()
        flat = samples.reshape(n, -1).double()
        m = self.prior.present.to(flat.device)  # the values in the density
        return {
            "sample/nll": sample_nll.double(),
            "sample/mean_abs_err": (flat.mean(0) - mean)[m].abs().mean(),
            "sample/std_abs_err": (flat.std(0) - var.sqrt())[m].abs().mean(),
        }

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The config is read now, not at __init__: the first initialize() may have changed it
        # (the excluded values), and the architecture in the checkpoint is the current one.
        checkpoint[CHECKPOINT_KEY] = checkpoint_record(self.prior)


# ---------------------------------------------------------------------------- .ckpt -> PosePrior
def _read_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Lightning checkpoint {str(path)!r} does not exist or is not a file")
    try:
        # weights_only: a checkpoint holds tensors and plain containers only, nothing to execute.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (truncated zip, not a torch file, unsafe pickle: all unreadable)
        raise CheckpointError(
            f"{str(path)!r} is not a readable Lightning checkpoint ({type(e).__name__}: {str(e)[:200]}); "
            "it is corrupt, truncated or not a .ckpt written by poseprior train"
        ) from None
    if not isinstance(ckpt, dict) or CHECKPOINT_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not a poseprior training checkpoint (no "
            f"{CHECKPOINT_KEY!r} entry); it was not written by poseprior.training"
        )
    return ckpt


def checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The :func:`~poseprior.hub.checkpoint_record` of a Lightning checkpoint (prior, format, config, ...)."""
    return dict(_read_lightning_checkpoint(path)[CHECKPOINT_KEY])


def prior_from_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu", max_parameters: int | None = MAX_PARAMETERS
) -> PosePrior:
    r"""Rebuilds the trained :class:`~poseprior.PosePrior` from a Lightning ``.ckpt`` of :class:`PriorModule`.

    The prior is built from the record in the checkpoint, validated like a checkpoint folder
    (``max_parameters``: see :func:`poseprior.hub.load_checkpoint`), and its weights are loaded
    strictly, in eval mode. Use :func:`export_checkpoint` to turn it into a shareable folder.
    """
    ckpt = _read_lightning_checkpoint(path)
    state = {k[len("prior.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("prior.")}
    record = ckpt[CHECKPOINT_KEY]
    return build_prior(record, state, str(path), map_location=map_location, max_parameters=max_parameters)


def export_checkpoint(path: str | Path, directory: str | Path, *, model_card: str | None = None) -> Path:
    """Writes the prior of a Lightning ``.ckpt`` to ``directory`` with the atomic ``prior.save``:
    ``config.json`` + ``model.safetensors`` (+ ``README.md`` if ``model_card`` is given)."""
    return prior_from_checkpoint(path).save(directory, model_card=model_card)


# ---------------------------------------------------------------------------- the driver
class _EpochLog(pl.Callback):
    """One log line per epoch (for logs and CI, where the progress bar is off)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation, when the epoch means of train/loss are available.
        if not trainer.is_global_zero:
            return
        keys = ("train/loss", "train/nll", "val/nll", "val/bpd", "val/round_trip_error", "sample/nll")
        shown = " | ".join(
            f"{k} {float(trainer.callback_metrics[k]):.4g}" for k in keys if k in trainer.callback_metrics
        )
        log.info("epoch %d/%d: %s", trainer.current_epoch + 1, trainer.max_epochs, shown)


class StopAfterEpochs(pl.Callback):
    """Stops training after ``epochs`` epochs of this run, as an interruption would (tests, debugging)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = int(epochs)
        self._done = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._done += 1
        if self._done >= self.epochs:
            trainer.should_stop = True


def build_trainer(
    *,
    root: str | Path = ".",
    run: str = "run",
    max_epochs: int = 20,
    devices: int | str = 1,
    accelerator: str = "auto",
    strategy: str = "auto",
    progress: bool = False,
    patience: int | None = None,
    gradient_clip_val: float | None = 10.0,
    log_every_n_steps: int = 50,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_kwargs: Any,
) -> pl.Trainer:
    r"""The Trainer of ``poseprior train``: TensorBoard logs, checkpoints, optional early stopping.

    Logs go to ``root/lightning_logs/<run>/`` and Lightning checkpoints to
    ``root/checkpoints/<run>/`` (``last.ckpt`` every epoch, ``best-epochNNN.ckpt`` with the lowest
    ``val/nll``). Build it with the same arguments to resume a run (Lightning restores the
    callbacks' state only for the callbacks it is given). The gradient norm is clipped at 10 as
    in ``fit``. ``trainer_kwargs`` go to :class:`pytorch_lightning.Trainer`.
    """
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
    from pytorch_lightning.loggers import TensorBoardLogger

    root = Path(root)
    cbs: list[pl.Callback] = [
        ModelCheckpoint(
            dirpath=root / "checkpoints" / run,
            filename="best-epoch{epoch:03d}",
            auto_insert_metric_name=False,
            monitor="val/nll",
            mode="min",
            save_top_k=1,
            save_last=True,
        ),
        _EpochLog(),
    ]
    if progress:
        cbs.append(TQDMProgressBar(refresh_rate=10))
    if patience is not None:
        cbs.append(EarlyStopping(monitor="val/nll", mode="min", patience=patience))
    cbs.extend(callbacks)
    logger = TensorBoardLogger(
        save_dir=str(root), name="lightning_logs", version=run, default_hp_metric=False
    )
    return pl.Trainer(
        max_epochs=max_epochs,
        devices=devices,
        accelerator=accelerator,
        strategy=strategy,
        logger=logger,
        callbacks=cbs,
        enable_progress_bar=progress,
        enable_model_summary=False,
        gradient_clip_val=gradient_clip_val,
        log_every_n_steps=log_every_n_steps,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
        **trainer_kwargs,
    )


@dataclass
class TrainResult:
    """What :func:`train` produced (on the global-zero process; other ranks get ``final=None``)."""

    prior: PosePrior
    trainer: pl.Trainer
    run_dir: Path
    final: Path | None
    best: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    best_val_nll: float | None = None
    epochs: int = 0


def _check_resume_config(ckpt: Path, prior: PosePrior) -> None:
    meta = checkpoint_config(ckpt)
    ours = {"prior": prior.name, "config": prior.get_config()}
    theirs = {"prior": meta.get("prior"), "config": meta.get("config")}
    if ours != theirs:
        diff = sorted(
            k
            for k in set(ours["config"]) | set(theirs["config"] or {})
            if ours["config"].get(k) != (theirs["config"] or {}).get(k)
        )
        raise CheckpointError(
            f"cannot resume from {str(ckpt)!r}: it was trained as {theirs['prior']!r} with a different "
            f"configuration (differs in: {', '.join(diff) or 'prior name'}); resume with the same prior "
            "arguments and data, or start a new run"
        )


def train(
    prior: PosePrior,
    datamodule: PoseDataModule,
    *,
    root: str | Path = ".",
    run: str = "run",
    max_epochs: int = 20,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    lr_schedule: Literal["cosine", "constant"] = "constant",
    seed: int = 0,
    num_eval_samples: int = 256,
    resume: bool | str | Path = False,
    devices: int | str = 1,
    accelerator: str = "auto",
    strategy: str = "auto",
    progress: bool = False,
    patience: int | None = None,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_kwargs: Any,
) -> TrainResult:
    r"""Initializes ``prior`` from the training split, trains it with Lightning and exports it.

    Arguments:
        prior: The prior to train (modified in place). If it is not initialized yet,
            ``prior.initialize(datamodule.train_poses)`` runs first; an initialized prior keeps its
            data statistics (as in ``fit``).
        datamodule: The data (its layout must be the prior's).
        root: Folder of ``lightning_logs/`` and ``checkpoints/``.
        run: The run name: ``root/checkpoints/<run>/`` and ``root/lightning_logs/<run>/``.
        max_epochs: Total epochs (a resumed run counts the epochs already done).
        lr: See :class:`PriorModule`.
        weight_decay: See :class:`PriorModule`.
        lr_schedule: See :class:`PriorModule`.
        seed: See :class:`PriorModule` (the data order uses ``datamodule.shuffle_seed``).
        num_eval_samples: See :class:`PriorModule`.
        resume: ``True`` to continue from ``checkpoints/<run>/last.ckpt``, or the path of a ``.ckpt``.
        devices: Devices (processes) per node, e.g. 2 with ``strategy="ddp"``.
        accelerator: ``"cpu"``, ``"gpu"``, ``"auto"``, ...
        strategy: ``"auto"``, ``"ddp"``, ``"ddp_spawn"``, ...
        progress: Show Lightning's progress bar.
        patience: Stop after this many epochs without a lower ``val/nll`` (``None``: never).
        callbacks: Extra Lightning callbacks.
        trainer_kwargs: Further :class:`pytorch_lightning.Trainer` arguments.

    Returns:
        The trained prior (last epoch), the trainer, the exported folders ``final/`` (last epoch)
        and ``best/`` (lowest validation NLL) under ``root/checkpoints/<run>/``, and the metrics of
        the last epoch.
    """
    if prior.layout.name != datamodule.layout.name:
        raise ValueError(
            f"train: the prior models layout {prior.layout.name!r} but the data module serves "
            f"{datamodule.layout.name!r}; build PoseDataModule(folder, prior.layout)"
        )
    root = Path(root)
    run_dir = root / "checkpoints" / run
    ckpt: Path | None = None
    if resume:
        ckpt = run_dir / "last.ckpt" if resume is True else Path(resume)
        if not ckpt.is_file():
            raise CheckpointError(
                f"cannot resume: {str(ckpt)!r} does not exist; train run {run!r} first "
                "(or pass the .ckpt to resume)"
            )
    datamodule.setup("fit")
    if not bool(prior.initialized):  # (like fit: an initialized prior keeps its data statistics)
        prior.initialize(datamodule.train_poses.to(prior.data_mean.dtype))
    if ckpt is not None:
        _check_resume_config(ckpt, prior)
    module = PriorModule(
        prior,
        lr=lr,
        weight_decay=weight_decay,
        lr_schedule=lr_schedule,
        seed=seed,
        num_eval_samples=num_eval_samples,
    )
    world = int(devices) if isinstance(devices, int) or str(devices).isdigit() else 1
    steps = datamodule.steps_per_epoch(world)
    trainer = build_trainer(
        root=root,
        run=run,
        max_epochs=max_epochs,
        devices=devices,
        accelerator=accelerator,
        strategy=strategy,
        progress=progress,
        patience=patience,
        log_every_n_steps=max(1, min(50, steps)),
        callbacks=callbacks,
        **trainer_kwargs,
    )
    trainer.fit(
        module, datamodule=datamodule, ckpt_path=None if ckpt is None else str(ckpt), weights_only=True
    )
    result = TrainResult(
        prior=module.prior.eval(),
        trainer=trainer,
        run_dir=run_dir,
        final=None,
        best=None,
        metrics={k: float(v) for k, v in trainer.callback_metrics.items()},
        epochs=int(trainer.current_epoch),
    )
    if trainer.is_global_zero:
        result.final = module.prior.save(run_dir / "final")
        best_ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best_ckpt:
            result.best = export_checkpoint(best_ckpt, run_dir / "best")
            score = trainer.checkpoint_callback.best_model_score
            result.best_val_nll = None if score is None else float(score)
    return result
