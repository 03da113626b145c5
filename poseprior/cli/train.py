"""``poseprior train``: train one prior with PyTorch Lightning.

Output layout (under ``--out``, default the current folder)::

    checkpoints/<run>/last.ckpt          Lightning training state (a pickle): for --resume only
    checkpoints/<run>/best-epochNNN.ckpt the epoch with the lowest validation NLL (training state)
    checkpoints/<run>/final/             the last epoch, exported: config.json + model.safetensors
    checkpoints/<run>/best/              the best epoch, exported the same way
    lightning_logs/<run>/                TensorBoard logs (tensorboard --logdir lightning_logs)
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError
from ..evaluation import markdown
from .common import (
    check_writable,
    existing_folder,
    import_training,
    non_negative_float,
    non_negative_int,
    parse_prior_args,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from ..base import PosePrior


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train one prior with PyTorch Lightning (TensorBoard logs, checkpoints, --resume, DDP)",
        description="Train one prior on a data folder's train split, validating on its val split. Writes "
        "checkpoints/<run>/ (last.ckpt for --resume; final/ and best/ exported as config.json + "
        "model.safetensors) and lightning_logs/<run>/ (TensorBoard) under --out.",
    )
    p.add_argument("prior", help="registered prior name (see poseprior list)")
    p.add_argument("--data", required=True, help="folder of AMASS-format npz files with a splits.json")
    p.add_argument("--layout", help="joint layout (default: the prior's default, e.g. body)")
    p.add_argument(
        "--prior-args",
        nargs="*",
        metavar="KEY=VALUE",
        help="constructor arguments of the prior, e.g. blocks=2 hidden_features=64 (values parsed as JSON)",
    )
    p.add_argument(
        "--max-epochs", type=positive_int, default=20, help="total epochs, counting those of a resumed run"
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="batch size per process")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0)
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="cosine anneals to 0 over --max-epochs; a resumed run keeps the schedule it started with",
    )
    p.add_argument(
        "--patience", type=non_negative_int, help="stop after this many epochs without a lower val NLL"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, the data order and the training noise"
    )
    p.add_argument(
        "--eval-samples",
        type=non_negative_int,
        default=256,
        help="samples drawn each epoch for sample statistics",
    )
    p.add_argument("--fps", type=positive_float, help="subsample every file to this frame rate")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--out", default=".", help="folder of checkpoints/ and lightning_logs/ (default: current)")
    p.add_argument("--run", help="run name (default: the prior name)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="continue the run from checkpoints/<run>/last.ckpt (or from the .ckpt given)",
    )
    p.add_argument("--devices", default="1", help="devices (processes) per node, e.g. 2 with --strategy ddp")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu, auto, ...")
    p.add_argument(
        "--strategy", default="auto", help="auto, ddp (one process per device; CPU uses gloo), ..."
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on when stderr is a terminal; otherwise one log line per epoch)",
    )
    p.set_defaults(func=run)


def _is_launched_child() -> bool:
    """True in the processes that Lightning's DDP launcher starts for ranks other than 0 of a node."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) != 0


@contextmanager
def _quiet_lightning(verbose: bool) -> Iterator[None]:
    """Silences Lightning's chatter for the command's duration (restored afterwards)."""
    pl_log = logging.getLogger("pytorch_lightning")
    level = pl_log.level
    if not verbose:
        pl_log.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # Known and harmless here: a torch API deprecation inside Lightning 2.6, and the advice to
        # use DataLoader workers (the poses are one in-memory tensor; workers would only add IPC).
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        try:
            yield
        finally:
            pl_log.setLevel(level)


def _metric(metrics: dict[str, float], key: str, fmt: str = ".2f") -> str:
    return format(metrics[key], fmt) if key in metrics and math.isfinite(metrics[key]) else "-"


def _build(
    args: argparse.Namespace, training: Any, folder: Path, layout: str, kwargs: dict[str, Any], child: bool
) -> tuple[PosePrior, Any]:
    """The initialized prior (the same on every rank) and the data module."""
    from .. import create

    dm = training.PoseDataModule(
        folder,
        layout,
        batch_size=args.batch_size,
        shuffle_seed=args.seed,
        fps=args.fps,
        train_split=args.train_split,
        val_split=args.val_split,
    )
    dm.setup("fit")
    if not child:
        print(f"data: {folder}\n  {dm.describe()}", flush=True)
    # The weights are drawn from torch's RNG when the prior is built and again when initialize()
    # rebuilds it for the final D: seed that in a fork, so the run is reproducible and the process's
    # RNG is left as it was. Every rank builds the same prior.
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        prior = create(args.prior, layout=layout, **kwargs)
        prior.initialize(dm.train_poses.to(prior.data_mean.dtype))
    return prior, dm


def run(args: argparse.Namespace) -> int:
    from .. import prior_class

    folder = existing_folder(args.data)
    cls = prior_class(args.prior)  # an unknown name fails here, before Lightning is imported
    kwargs = parse_prior_args(args.prior_args, args.prior)
    layout = args.layout or kwargs.pop("layout", None) or cls.default_layout
    run_name = args.run or args.prior
    out = check_writable(args.out, "--out")
    run_dir = out / "checkpoints" / run_name
    child = _is_launched_child()
    if not args.resume and not child and (run_dir / "last.ckpt").exists():
        raise CheckpointError(
            f"run {run_name!r} already has checkpoints in {str(run_dir)!r}; pass --resume to continue it, or "
            "--run NAME for a new run"
        )
    training = import_training()
    prior, dm = _build(args, training, folder, layout, kwargs, child)
    if not child:
        n_params = sum(p.numel() for p in prior.parameters())
        print(
            f"prior: {prior.name} {prior.get_config()}\n  D = {prior.dim}, {n_params:,} parameters",
            flush=True,
        )
        print(
            f"training run {run_name!r}{' (resumed)' if args.resume else ''}: up to {args.max_epochs} epochs",
            flush=True,
        )
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    if not progress:
        logging.getLogger("poseprior.training").setLevel(logging.INFO)  # one line per epoch instead
    resume: bool | Path = Path(args.resume) if isinstance(args.resume, str) else bool(args.resume)
    try:
        with _quiet_lightning(args.verbose):
            result = training.train(
                prior,
                dm,
                root=out,
                run=run_name,
                max_epochs=args.max_epochs,
                lr=args.lr,
                weight_decay=args.weight_decay,
                lr_schedule=args.lr_schedule,
                seed=args.seed,
                num_eval_samples=args.eval_samples,
                resume=resume,
                devices=args.devices,
                accelerator=args.accelerator,
                strategy=args.strategy,
                progress=progress,
                patience=args.patience,
            )
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl+C into a graceful stop and exit(1)
        if not child:
            print(
                f"\ninterrupted; {run_dir / 'last.ckpt'} holds the last completed epoch. Continue with the "
                "same "
                "command and --resume",
                file=sys.stderr,
            )
        raise
    if result.final is None:  # not the global-zero process
        return 0
    _report(args, prior, dm, result, run_name, run_dir)
    return 0


def _report(
    args: argparse.Namespace, prior: PosePrior, dm: Any, result: Any, run_name: str, run_dir: Path
) -> None:
    """The table of the trained run and where its files are."""
    m = result.metrics
    head = ["run", "prior", "layout", "D", "epochs"]
    head += ["train loss", "train NLL", "val NLL", "val BPD", "best val NLL"]
    row = [
        run_name,
        prior.name,
        prior.layout.name,
        str(prior.dim),
        str(result.epochs),
        _metric(m, "train/loss"),
        _metric(m, "train/nll"),
        _metric(m, "val/nll"),
        _metric(m, "val/bpd", ".3f"),
        "-" if result.best_val_nll is None else f"{result.best_val_nll:.2f}",
    ]
    print()
    print(markdown(head, [row]))
    keys = ("val/round_trip_error", "val/reconstruction_error", "sample/mean_abs_err", "sample/std_abs_err")
    extra = [f"{k} {_metric(m, k, '.3g')}" for k in keys if k in m]
    if extra:
        print("  " + ", ".join(extra))
    subset = min(dm.train_eval_size, len(dm.train_poses))
    print(
        f"\nNLL in nats per pose (train NLL on a fixed subset of {subset} training poses, clean, eval mode); "
        "BPD = NLL / (D ln 2)."
    )
    print(
        f"exported: {result.final} (last epoch)" + (f", {result.best} (best val NLL)" if result.best else "")
    )
    print(f"training state: {run_dir}/last.ckpt (poseprior train ... --run {run_name} --resume)")
    print(f"logs: tensorboard --logdir {Path(args.out) / 'lightning_logs'}")
