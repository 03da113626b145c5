r"""The ``train`` driver: a run folder, a Lightning Trainer, stages, resume, exports and ``run.json``.

**A run** is ``root/checkpoints/<run>/`` (checkpoints, exports, ``run.json``; see
:mod:`poseprior.training.checkpoints` and :mod:`poseprior.training.runs`) and
``root/lightning_logs/<run>/`` (TensorBoard). A run folder that already holds a run is refused
unless the run is resumed (``resume``) or replaced (``overwrite``), and one lock keeps a second
trainer out of it.

**Resume and stages.** ``resume`` continues a run exactly: the checkpoint restores the weights,
the optimizer, the schedule and the epoch, and the run must use the same prior configuration, data
and optimization options (``lr``, ``weight_decay``, ``lr_schedule``, ``batch_size``, ``seed``,
``grad_clip``, ``ema``, ``precision``; with a cosine schedule also ``max_epochs``) or it is refused
with a pointer to ``init_from``. Resuming a finished run changes nothing. ``init_from`` starts a new
run (a *stage*) from the weights of a ``.ckpt`` or an exported folder, with a fresh optimizer and
this run's options; the prior configuration must match.

**Closed-form priors** (``iterative_fit = False``, the Gaussian) are fitted by their closed-form
``fit`` on the training split inside the same driver: one validation pass logs the same metrics,
``last.ckpt`` is written and ``final/`` and ``best/`` exported, so the command line and
``prior.fit`` give the same prior.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch

from ..base import PosePrior
from ..errors import CheckpointError
from .checkpoints import (
    RESUME_OPTIONS,
    check_resume,
    checkpoint_callbacks,
    checkpoint_run,
    export_checkpoint,
    load_init_from,
    read_lightning_checkpoint,
    stopped_early,
)
from .data import PoseDataModule
from .module import PriorModule
from .runs import RunLock, new_record, now, prepare_run_folder, write_run_record

__all__ = ["RESUME_OPTIONS", "StopAfterEpochs", "TrainOptions", "TrainResult", "build_trainer", "train"]

log = logging.getLogger("poseprior.training")

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


class _EpochLog(pl.Callback):
    """One log line per epoch (for logs and CI, where the progress bar is off)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation, when the epoch means of train/loss are available.
        if not trainer.is_global_zero:
            return
        keys = ("train/loss", "train/nll", "val/nll", "val/bpd", "val/round_trip_error", "sample/apd_ratio")
        m = trainer.callback_metrics
        shown = " | ".join(f"{k} {float(m[k]):.4g}" for k in keys if k in m)
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
    precision: str = "32",
    progress: bool = False,
    patience: int | None = None,
    gradient_clip_val: float | None = 10.0,
    save_every: int | None = None,
    log_every_n_steps: int = 50,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_kwargs: Any,
) -> pl.Trainer:
    r"""The Trainer of ``poseprior train``: TensorBoard logs, checkpoints, optional early stopping.

    Logs go to ``root/lightning_logs/<run>/`` and checkpoints to ``root/checkpoints/<run>/``:
    ``last.ckpt`` after every epoch, ``best-epochNNN.ckpt`` with the lowest ``val/nll`` and, with
    ``save_every``, ``epochNNN.ckpt`` every that many epochs (epochs counted from 1). Build it
    with the same arguments to resume a run (Lightning restores the callbacks' state only for the
    callbacks it is given). ``gradient_clip_val`` clips the gradient norm (10 as in ``fit``;
    ``None`` or 0: no clipping). ``trainer_kwargs`` go to :class:`pytorch_lightning.Trainer`.
    """
    from pytorch_lightning.callbacks import EarlyStopping, TQDMProgressBar
    from pytorch_lightning.loggers import TensorBoardLogger

    root = Path(root)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cbs: list[pl.Callback] = [*checkpoint_callbacks(root / "checkpoints" / run, save_every), _EpochLog()]
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
        precision=precision,
        logger=logger,
        callbacks=cbs,
        enable_progress_bar=progress,
        enable_model_summary=False,
        gradient_clip_val=gradient_clip_val or None,
        log_every_n_steps=log_every_n_steps,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
        **trainer_kwargs,
    )


@dataclass
class TrainResult:
    """What :func:`train` produced (on the global-zero process; other ranks get ``final=None``).

    ``already_finished`` is True when a resumed run had nothing left to do (nothing was changed).
    """

    prior: PosePrior
    trainer: pl.Trainer | None
    run_dir: Path
    final: Path | None
    best: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    best_val_nll: float | None = None
    epochs: int = 0
    record: Path | None = None
    already_finished: bool = False


def launched_child() -> bool:
    """True in the processes a DDP launcher starts for ranks other than global rank 0."""
    return any(int(os.environ.get(k, "0") or 0) != 0 for k in ("LOCAL_RANK", "NODE_RANK", "RANK"))


@dataclass(frozen=True)
class TrainOptions:
    r"""The options of a training run: keyword arguments of :func:`train`, recorded in ``run.json``.

    Attributes:
        max_epochs: Total epochs (a resumed run counts the epochs already done).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_schedule: ``"constant"``, or ``"cosine"`` (annealed to 0 over ``max_epochs``).
        seed: Seed of the training noise and the evaluation samples (the data order uses the data
            module's ``shuffle_seed``); see :class:`PriorModule`.
        num_eval_samples: Samples drawn every epoch for the sample statistics (0: none).
        init_from: Start a new run (a *stage*) from the weights of this ``.ckpt`` or exported folder,
            with a fresh optimizer and these options.
        save_every: Also keep ``epochNNN.ckpt`` every this many epochs (``None``: no).
        ema: Decay in (0, 1) of an exponential moving average of the weights, used for validation
            and export (``None``: no EMA).
        grad_clip: Clip the gradient norm at this value (``None`` or 0: no clipping).
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (the densities stay in float32).
        compile: Run ``prior.compile()`` before training.
        patience: Stop after this many epochs without a lower ``val/nll`` (``None``: never).
        devices: Devices (processes) per node, e.g. 2 with ``strategy="ddp"``.
        accelerator: ``"cpu"``, ``"gpu"``, ``"auto"``, ...
        strategy: ``"auto"``, ``"ddp"``, ``"ddp_spawn"``, ...
        progress: Show Lightning's progress bar.
    """

    max_epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: Literal["cosine", "constant"] = "constant"
    seed: int = 0
    num_eval_samples: int = 256
    init_from: str | Path | None = None
    save_every: int | None = None
    ema: float | None = None
    grad_clip: float | None = 10.0
    precision: str = "32"
    compile: bool = False
    patience: int | None = None
    devices: int | str = 1
    accelerator: str = "auto"
    strategy: str = "auto"
    progress: bool = False

    def __post_init__(self) -> None:
        def number(
            name: str, low: float, *, strict: bool = False, integer: bool = False, none: bool = False
        ) -> None:
            v = getattr(self, name)
            if none and v is None:
                return
            kind = int if integer else (int, float)
            ok = (
                isinstance(v, kind)
                and not isinstance(v, bool)
                and math.isfinite(v)
                and (v > low if strict else v >= low)
            )
            if not ok:
                what = "an integer" if integer else "a finite number"
                bound = f"{'>' if strict else '>='} {low:g}" + (" or None" if none else "")
                raise ValueError(f"train: {name} must be {what} {bound}, got {v!r}")

        number("max_epochs", 1, integer=True)
        number("lr", 0)
        number("weight_decay", 0)
        number("num_eval_samples", 0, integer=True)
        number("save_every", 1, integer=True, none=True)
        number("patience", 0, integer=True, none=True)
        number("grad_clip", 0, none=True)
        number("ema", 0, strict=True, none=True)
        if self.ema is not None and self.ema >= 1:
            raise ValueError(f"train: ema must be a decay in (0, 1) or None, got {self.ema!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"train: lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if str(self.precision) not in PRECISIONS:
            raise ValueError(
                f"train: precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )

    def record(self, prior: PosePrior, dm: PoseDataModule, extra: dict[str, Any]) -> dict[str, Any]:
        """The run's resolved options, under the names of ``poseprior train``'s options."""
        own = {
            k: v for k, v in self.__dict__.items() if k not in ("num_eval_samples", "progress", "init_from")
        }
        return {
            "prior": prior.name,
            "prior_args": extra.get("prior_args"),
            "layout": prior.layout.name,
            "data": str(dm.folder.resolve()),
            "splits_file": None if dm.splits_file is None else str(dm.splits_file.resolve()),
            "train_split": dm.train_split,
            "val_split": dm.val_split,
            "fps": dm.fps,
            "batch_size": dm.batch_size,
            "eval_batch_size": dm.eval_batch_size,
            "train_eval_size": dm.train_eval_size,
            "num_workers": dm.num_workers,
            "shuffle_seed": dm.shuffle_seed,
            "closed_form": not prior.iterative_fit,
            **own,
            "grad_clip": self.grad_clip or None,
            "precision": str(self.precision),
            "eval_samples": self.num_eval_samples,
            "init_from": None if self.init_from is None else str(Path(self.init_from).resolve()),
        }


def train(
    prior: PosePrior,
    datamodule: PoseDataModule,
    *,
    root: str | Path = ".",
    run: str = "run",
    resume: bool | str | Path = False,
    overwrite: bool = False,
    callbacks: Sequence[pl.Callback] = (),
    record: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> TrainResult:
    r"""Initializes ``prior`` from the training split, trains it with Lightning, exports and records it.

    Arguments:
        prior: The prior to train (modified in place). If it is not initialized,
            ``prior.initialize(datamodule.train_poses)`` runs first. A closed-form prior
            (``iterative_fit = False``) is fitted in closed form (see the module docs).
        datamodule: The data (its layout must be the prior's).
        root: Folder of ``lightning_logs/`` and ``checkpoints/``.
        run: The run name: ``root/checkpoints/<run>/`` and ``root/lightning_logs/<run>/``.
        resume: ``True`` to continue from ``checkpoints/<run>/last.ckpt``, or the path of a ``.ckpt``
            (same options; a finished run is left unchanged; see the module docs).
        overwrite: Replace a run folder that already holds a run (else it is refused).
        callbacks: Extra Lightning callbacks.
        record: Extra entries for ``run.json`` (the command line adds ``prior_args`` and ``cli``).
        trainer_kwargs: Further :class:`pytorch_lightning.Trainer` arguments.
        options: The :class:`TrainOptions` (``max_epochs=``, ``lr=``, ``init_from=``, ``ema=``, ...).

    Returns:
        The trained prior (last epoch; its EMA weights with ``ema``), the trainer, the exported
        folders ``final/`` (last epoch) and ``best/`` (lowest validation NLL), the metrics of the
        last epoch and the path of ``run.json``.
    """
    unknown = sorted(set(options) - set(TrainOptions.__dataclass_fields__))
    if unknown:
        raise TypeError(
            f"train: unknown option(s) {unknown}; it takes {sorted(TrainOptions.__dataclass_fields__)} (and "
            "trainer_kwargs={...} for Lightning's Trainer)"
        )
    opts = TrainOptions(**options)
    if prior.layout.name != datamodule.layout.name:
        raise ValueError(
            f"train: the prior models layout {prior.layout.name!r} but the data module serves "
            f"{datamodule.layout.name!r}; build PoseDataModule(folder, prior.layout)"
        )
    if resume and opts.init_from is not None:
        raise ValueError("train: resume continues a run and init_from starts a new one; pass one of them")
    if not prior.iterative_fit and opts.init_from is not None:
        raise ValueError(
            f"train: {prior.name} is fitted in closed form from the data, so init_from has no weights to "
            "start from; leave it out"
        )
    root = Path(root)
    run_dir = root / "checkpoints" / run
    plan = _Plan(
        prior, datamodule, root, run, opts, dict(record or {}), callbacks, dict(trainer_kwargs or {})
    )
    if launched_child():  # rank 0 owns the folder; the other ranks only train
        return plan.execute(resume, record=False)
    with RunLock(run_dir):
        prepare_run_folder(run_dir, root / "lightning_logs" / run, resume=bool(resume), overwrite=overwrite)
        return plan.execute(resume, record=True)


class _Plan:
    """One call of :func:`train`: prepares the prior, checks a resume, trains, exports and records."""

    def __init__(
        self,
        prior: PosePrior,
        dm: PoseDataModule,
        root: Path,
        run: str,
        opts: TrainOptions,
        extra: dict[str, Any],
        callbacks: Sequence[pl.Callback],
        trainer_kwargs: dict[str, Any],
    ) -> None:
        self.prior, self.dm, self.root, self.run, self.run_dir = (
            prior,
            dm,
            root,
            run,
            root / "checkpoints" / run,
        )
        self.opts, self.extra, self.progress = opts, extra, opts.progress
        self.callbacks, self.trainer_kwargs = callbacks, trainer_kwargs
        self.record: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the steps
    def execute(self, resume: bool | str | Path, *, record: bool) -> TrainResult:
        prior, dm = self.prior, self.dm
        dm.setup("fit")
        if not prior.iterative_fit:  # closed form: exactly prior.fit (which decides the values itself)
            prior.fit(
                dm.train_poses.to(prior.data_mean.dtype),
                generator=torch.Generator().manual_seed(self.opts.seed),
                mirror=dm.mirror,
            )
        elif not bool(prior.initialized):
            prior.initialize(dm.fit_poses.to(prior.data_mean.dtype))  # (mirrored, as fit does)
        options = self.opts.record(prior, dm, self.extra)
        options["data_sha256"] = dm.poses_sha256()
        self.options = options
        ckpt_path = self._resume_path(resume)
        if ckpt_path is not None:
            ckpt = read_lightning_checkpoint(ckpt_path)
            state = check_resume(ckpt, ckpt_path, prior, options)
            done = (
                not prior.iterative_fit
                or state["epochs_done"] >= options["max_epochs"]
                or stopped_early(ckpt)
            )
            if done:
                return self._finished(ckpt_path, state["epochs_done"], record)
        if options["init_from"] is not None:
            load_init_from(prior, options["init_from"])
        if record:
            self._start_record(ckpt_path)
        try:
            result = self._fit(ckpt_path) if prior.iterative_fit else self._fit_closed_form()
        except BaseException:
            if record:
                last = self.run_dir / "last.ckpt"
                done = checkpoint_run(read_lightning_checkpoint(last))["epochs_done"] if last.is_file() else 0
                self._update_record(status="interrupted", epochs_done=done)
            raise
        if record and result.final is not None:
            result.record = self._finish_record(result)
        return result

    def _resume_path(self, resume: bool | str | Path) -> Path | None:
        if not resume:
            return None
        ckpt = self.run_dir / "last.ckpt" if resume is True else Path(resume)
        if not ckpt.is_file():
            raise CheckpointError(
                f"cannot resume: {str(ckpt)!r} does not exist; train run {self.run!r} first (or pass "
                "the .ckpt to resume)"
            )
        return ckpt

    def _trainer(self, max_epochs: int, **kwargs: Any) -> pl.Trainer:
        o = self.options
        world = int(o["devices"]) if str(o["devices"]).isdigit() else 1
        steps = self.dm.steps_per_epoch(world)
        return build_trainer(
            root=self.root,
            run=self.run,
            max_epochs=max_epochs,
            devices=o["devices"],
            accelerator=o["accelerator"],
            strategy=o["strategy"],
            precision=o["precision"],
            progress=self.progress,
            gradient_clip_val=o["grad_clip"],
            log_every_n_steps=max(1, min(50, steps)),
            callbacks=self.callbacks,
            **kwargs,
            **self.trainer_kwargs,
        )

    def _fit(self, ckpt: Path | None) -> TrainResult:
        o, prior = self.options, self.prior
        if o["compile"]:
            prior.compile()
        module = PriorModule(
            prior,
            lr=o["lr"],
            weight_decay=o["weight_decay"],
            lr_schedule=o["lr_schedule"],
            seed=o["seed"],
            num_eval_samples=o["eval_samples"],
            ema_decay=o["ema"],
            run_options=o,
        )
        trainer = self._trainer(o["max_epochs"], patience=o["patience"], save_every=o["save_every"])
        trainer.fit(
            module, datamodule=self.dm, ckpt_path=None if ckpt is None else str(ckpt), weights_only=True
        )
        result = TrainResult(
            prior=module.eval_prior.eval(),
            trainer=trainer,
            run_dir=self.run_dir,
            final=None,
            best=None,
            metrics={k: float(v) for k, v in trainer.callback_metrics.items()},
            epochs=int(trainer.current_epoch),
        )
        if trainer.is_global_zero:
            result.final = module.eval_prior.save(self.run_dir / "final")
            best = trainer.checkpoint_callback
            if best is not None and best.best_model_path:
                result.best = export_checkpoint(best.best_model_path, self.run_dir / "best")
                result.best_val_nll = None if best.best_model_score is None else float(best.best_model_score)
        return result

    def _fit_closed_form(self) -> TrainResult:
        o, prior, dm = self.options, self.prior, self.dm
        train = dm.train_poses.to(prior.data_mean.dtype)  # (fitted by execute: prior.fit(train))
        prior.eval()
        module = PriorModule(prior, seed=o["seed"], num_eval_samples=o["eval_samples"], run_options=o)
        trainer = self._trainer(1)
        trainer.validate(module, datamodule=dm, verbose=False)
        with torch.no_grad():
            loss = sum(float(prior.training_loss(b)) * len(b) for b in train.split(4096)) / len(train)
        found = {k: float(v) for k, v in trainer.callback_metrics.items()}
        result = TrainResult(
            prior=prior,
            trainer=trainer,
            run_dir=self.run_dir,
            final=None,
            best=None,
            metrics={**found, "train/loss": loss},
            epochs=1,
        )
        trainer.save_checkpoint(self.run_dir / "last.ckpt")  # (every rank: it synchronizes them)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"train/loss": loss}, step=0)
                logger.save()
            result.final = prior.save(self.run_dir / "final")
            result.best = prior.save(self.run_dir / "best")
            result.best_val_nll = found.get("val/nll")
        return result

    def _finished(self, ckpt: Path, epochs_done: int, record: bool) -> TrainResult:
        """A resumed run with nothing left to do: changes nothing (or completes a missing export)."""
        from .checkpoints import prior_from_checkpoint
        from .runs import RUN_RECORD, read_run_record

        final, best = self.run_dir / "final", self.run_dir / "best"
        found = read_run_record(self.run_dir) if (self.run_dir / RUN_RECORD).is_file() else None
        result = TrainResult(
            prior=prior_from_checkpoint(ckpt),
            trainer=None,
            run_dir=self.run_dir,
            final=final if final.is_dir() else None,
            best=best if best.is_dir() else None,
            epochs=epochs_done,
            already_finished=True,
        )
        if found is not None:
            result.record = self.run_dir / RUN_RECORD
            result.metrics = {k: v for k, v in (found.get("metrics") or {}).items() if isinstance(v, float)}
            result.best_val_nll = (found.get("best") or {}).get("val_nll")
        if result.final is not None and (found is None or found.get("status") == "finished"):
            return result
        if record:  # the last epoch completed but the run stopped before its exports: finish them
            result.final = result.prior.save(final)
            result.already_finished = False
            if found is not None:
                self.record = found
                self._update_record(
                    status="finished",
                    epochs_done=epochs_done,
                    exports={"final": str(result.final), "best": found.get("exports", {}).get("best")},
                )
        return result

    # ------------------------------------------------------------------ run.json
    def _start_record(self, ckpt: Path | None) -> None:
        from .runs import read_run_record

        path = self.run_dir / "run.json"
        fresh = new_record(self.run, self.prior, self.dm, self.options, self.extra)
        if ckpt is not None and path.is_file():
            old = read_run_record(path)
            fresh["started"] = old.get("started", fresh["started"])
            fresh["init_from"] = old.get("init_from")
            resumes = list(old.get("resumes") or [])
            fresh["resumes"] = [
                *resumes,
                {"at": now(), "from": str(ckpt), "epochs_done": old.get("epochs_done")},
            ]
        self.record = fresh
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_run_record(self.run_dir, fresh)

    def _update_record(self, **changes: Any) -> None:
        if self.record is None:
            return
        self.record.update(changes, updated=now())
        write_run_record(self.run_dir, self.record)

    def _finish_record(self, result: TrainResult) -> Path:
        trainer = result.trainer
        early = getattr(getattr(trainer, "early_stopping_callback", None), "stopped_epoch", 0) or 0
        finished = result.epochs >= self.options["max_epochs"] or early > 0 or not self.prior.iterative_fit
        best = trainer.checkpoint_callback if trainer is not None else None
        self._update_record(
            status="finished" if finished else "stopped",
            stopped_early=early > 0,
            epochs_done=result.epochs,
            metrics=result.metrics,
            best={
                "val_nll": result.best_val_nll,
                "checkpoint": getattr(best, "best_model_path", None) or None,
            },
            exports={"final": str(result.final), "best": None if result.best is None else str(result.best)},
        )
        return self.run_dir / "run.json"
