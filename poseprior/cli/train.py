"""``poseprior train``: train one prior with PyTorch Lightning.

Output layout (under ``--out``, default the current folder; epochs counted from 1)::

    checkpoints/<run>/run.json           the run record: every option, the data, versions, progress
    checkpoints/<run>/last.ckpt          Lightning training state after every epoch (a pickle of
                                         tensors): for --resume and --init-from
    checkpoints/<run>/best-epochNNN.ckpt the epoch with the lowest validation NLL
    checkpoints/<run>/epochNNN.ckpt      every --save-every N epochs (all kept)
    checkpoints/<run>/final/             the last epoch, exported: config.json + model.safetensors
    checkpoints/<run>/best/              the best epoch, exported the same way
    lightning_logs/<run>/                TensorBoard logs (tensorboard --logdir lightning_logs)

Options are resolved in layers: the command line over ``--config run.json`` (or, with
``--resume``, over the run's own ``run.json``) over the defaults below.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import PosePriorError
from ..evaluation import markdown
from .common import (
    check_writable,
    ema_decay,
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

DEFAULTS: dict[str, Any] = {
    "prior": None,
    "data": None,
    "layout": None,
    "prior_args": None,
    "max_epochs": 20,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "patience": None,
    "seed": 0,
    "eval_samples": 256,
    "fps": None,
    "train_split": "train",
    "val_split": "val",
    "run": None,
    "devices": "1",
    "accelerator": "auto",
    "strategy": "auto",
    "precision": "32",
    "ema": None,
    "grad_clip": 10.0,
    "num_workers": 0,
    "save_every": None,
    "compile": False,
    "init_from": None,
}
"""The options a run record holds (``run.json``'s ``options``) and their defaults."""

_TRAIN_OPTIONS = (
    "max_epochs", "lr", "weight_decay", "lr_schedule", "seed", "init_from", "save_every", "ema", "grad_clip",
    "precision", "compile", "patience", "devices", "accelerator", "strategy",
)  # fmt: skip
"""The options passed through to :func:`poseprior.training.train` under the same name."""
_CLOSED_FORM_UNUSED = (
    "lr",
    "weight_decay",
    "lr_schedule",
    "ema",
    "grad_clip",
    "max_epochs",
    "precision",
    "compile",
    "save_every",
    "patience",
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train one prior with PyTorch Lightning (stages, --resume, run.json, mixed precision, EMA, DDP)",
        description="Train one prior on a data folder's train split, validating on its val split. Writes "
        "checkpoints/<run>/ (run.json; last.ckpt every epoch for --resume and --init-from; final/ and best/ "
        "exported as config.json + model.safetensors) and lightning_logs/<run>/ (TensorBoard) under --out.",
    )
    p.add_argument(
        "prior", nargs="?", help="registered prior name (see poseprior list); optional with --config"
    )
    p.add_argument(
        "--config", metavar="RUN_JSON", help="re-run the run.json of a run (options given here override)"
    )
    p.add_argument("--data", help="folder of AMASS-format npz files with a splits.json")
    p.add_argument("--layout", help="joint layout (default: the prior's default, e.g. body)")
    p.add_argument(
        "--prior-args",
        nargs="*",
        metavar="KEY=VALUE",
        help="constructor arguments of the prior, e.g. blocks=2 hidden_features=64 (values parsed as JSON)",
    )
    p.add_argument(
        "--max-epochs", type=positive_int, help="total epochs, counting those of a resumed run (20)"
    )
    p.add_argument("--batch-size", type=positive_int, help="batch size per process (256)")
    p.add_argument("--lr", type=positive_float, help="AdamW learning rate (1e-3)")
    p.add_argument("--weight-decay", type=non_negative_float, help="AdamW weight decay (0)")
    p.add_argument(
        "--lr-schedule", choices=["constant", "cosine"], help="cosine anneals to 0 over --max-epochs"
    )
    p.add_argument(
        "--patience", type=non_negative_int, help="stop after this many epochs without a lower val NLL"
    )
    p.add_argument("--seed", type=int, help="seed of the weights, the data order and the training noise (0)")
    p.add_argument(
        "--eval-samples", type=non_negative_int, help="samples drawn each epoch for sample statistics"
    )
    p.add_argument("--fps", type=positive_float, help="subsample every file to this frame rate")
    p.add_argument("--train-split", help="name of the training split in splits.json (train)")
    p.add_argument("--val-split", help="name of the validation split (val)")
    p.add_argument(
        "--precision", choices=["32", "bf16-mixed", "16-mixed"], help="(32) densities stay float32"
    )
    p.add_argument(
        "--ema", type=ema_decay, metavar="DECAY", help="keep EMA weights for validation and export"
    )
    p.add_argument("--grad-clip", type=non_negative_float, help="clip the gradient norm (10; 0: off)")
    p.add_argument("--num-workers", type=non_negative_int, help="DataLoader worker processes (0)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="prior.compile()")
    p.add_argument(
        "--save-every", type=positive_int, metavar="N", help="also keep epochNNN.ckpt every N epochs"
    )
    p.add_argument("--out", default=".", help="folder of checkpoints/ and lightning_logs/ (default: current)")
    p.add_argument("--run", help="run name (default: the prior name)")
    stage = p.add_mutually_exclusive_group()
    stage.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="continue the run exactly from checkpoints/<run>/last.ckpt (or the .ckpt given), same options",
    )
    stage.add_argument(
        "--init-from",
        metavar="CKPT_OR_EXPORT",
        help="start a new run (stage) from the weights of a .ckpt or an exported folder, fresh optimizer",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run folder if it holds a run")
    p.add_argument("--devices", help="devices (processes) per node, e.g. 2 with --strategy ddp")
    p.add_argument("--accelerator", help="cpu, gpu, auto, ...")
    p.add_argument("--strategy", help="auto, ddp (one process per device; CPU uses gloo), ...")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on when stderr is a terminal; otherwise one log line per epoch)",
    )
    p.set_defaults(func=run)


def _resolve(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(resolved options, the ones given on the command line) — see the module docs."""
    training = import_training()
    given = {k: v for k, v in vars(args).items() if k in DEFAULTS and k != "prior_args" and v is not None}
    record = None
    if args.config is not None:
        if args.resume:
            raise PosePriorError(
                "--config starts a run from a record, --resume continues a run's own: pass one"
            )
        record = training.read_run_record(args.config)
    elif args.resume:
        name = given.get("run") or given.get("prior")
        found = Path(args.out) / "checkpoints" / str(name) / training.RUN_RECORD
        if name is not None and found.is_file():
            record = training.read_run_record(found)
    layered = {k: v for k, v in (record or {}).get("options", {}).items() if k in DEFAULTS}
    if record is not None and record.get("run"):
        layered.setdefault("run", record["run"])
    options = {**DEFAULTS, **layered, **given}
    if options["prior"] is None:
        raise PosePriorError(
            "name the prior to train (e.g. poseprior train global_flow --data DIR) or pass --config"
        )
    if options["data"] is None:
        raise PosePriorError(
            "--data is required: the folder of npz files with a splits.json (or pass --config)"
        )
    # Another prior than the record's: the record's constructor arguments do not apply to it.
    same = options["prior"] == layered.get("prior")
    recorded = layered.get("prior_args")
    if same and recorded is None and record is not None:  # a record of poseprior.training.train: its config
        recorded = {k: v for k, v in (record.get("prior") or {}).get("config", {}).items() if k != "layout"}
    options["prior_args"] = dict(recorded or {}) if same else {}
    options["prior_args"].update(parse_prior_args(args.prior_args, options["prior"]))
    if args.resume:  # a resumed stage already holds the weights it started from
        options["init_from"] = None
    options["ema"] = options["ema"] or None  # --ema 0: no EMA
    return options, given


def _is_launched_child() -> bool:
    """True in the processes that Lightning's DDP launcher starts for ranks other than 0 of a node."""
    from ..training.driver import launched_child

    return launched_child()


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
        warnings.filterwarnings("ignore", message=".*AMP with fp16 is not supported on CPU.*")
        try:
            yield
        finally:
            pl_log.setLevel(level)


def _metric(metrics: dict[str, float], key: str, fmt: str = ".2f") -> str:
    value = metrics.get(key)
    return format(value, fmt) if isinstance(value, float) and math.isfinite(value) else "-"


def _build(o: dict[str, Any], training: Any, folder: Path, layout: str, child: bool) -> tuple[PosePrior, Any]:
    """The initialized prior (the same on every rank) and the data module."""
    from .. import create

    dm = training.PoseDataModule(
        folder,
        layout,
        batch_size=o["batch_size"],
        shuffle_seed=o["seed"],
        fps=o["fps"],
        train_split=o["train_split"],
        val_split=o["val_split"],
        num_workers=o["num_workers"],
    )
    dm.setup("fit")
    if not child:
        print(f"data: {folder}\n  {dm.describe()}", flush=True)
    # The weights are drawn from torch's RNG when the prior is built and again when initialize()
    # rebuilds it for the final D: seed that in a fork, so the run is reproducible and the process's
    # RNG is left as it was. Every rank builds the same prior.
    with torch.random.fork_rng():
        torch.manual_seed(o["seed"])
        prior = create(o["prior"], layout=layout, **o["prior_args"])
        if prior.iterative_fit:  # (a closed-form prior is fitted by train(): prior.fit decides its values)
            prior.initialize(dm.train_poses.to(prior.data_mean.dtype))
    return prior, dm


def run(args: argparse.Namespace) -> int:
    from .. import prior_class

    o, given = _resolve(args)
    folder = existing_folder(o["data"])
    cls = prior_class(o["prior"])  # an unknown name fails here, before the data is read
    layout = o["layout"] or o["prior_args"].pop("layout", None) or cls.default_layout
    run_name = o["run"] or o["prior"]
    out = check_writable(args.out, "--out")
    run_dir = out / "checkpoints" / run_name
    child = _is_launched_child()
    training = import_training()
    if not child and not args.overwrite:  # refused before any work (train() checks again under its lock)
        from ..training.runs import prepare_run_folder

        prepare_run_folder(
            run_dir, out / "lightning_logs" / run_name, resume=bool(args.resume), overwrite=False
        )
    prior, dm = _build(o, training, folder, layout, child)
    if not child:
        _announce(o, given, prior, run_name, args)
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    if not progress:
        logging.getLogger("poseprior.training").setLevel(logging.INFO)  # one line per epoch instead
    resume: bool | Path = Path(args.resume) if isinstance(args.resume, str) else bool(args.resume)
    extra = {"prior_args": o["prior_args"], "cli": {k: v for k, v in given.items() if k != "prior_args"}}
    try:
        with _quiet_lightning(args.verbose):
            result = training.train(
                prior, dm, root=out, run=run_name, resume=resume, overwrite=args.overwrite, record=extra,
                num_eval_samples=o["eval_samples"], progress=progress, **{k: o[k] for k in _TRAIN_OPTIONS}
            )  # fmt: skip
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl+C into a graceful stop and exit(1)
        if not child:
            _interrupted(run_dir, run_name, args.out)
        raise
    if result.final is None and not result.already_finished:  # not the global-zero process
        return 0
    if result.already_finished:
        _finished(result, run_name, o)
        return 0
    _report(args, prior, dm, result, run_name, run_dir)
    return 0


def _announce(o: dict[str, Any], given: dict[str, Any], prior: PosePrior, run_name: str, args: Any) -> None:
    n_params = sum(p.numel() for p in prior.parameters())
    print(f"prior: {prior.name} {prior.get_config()}\n  D = {prior.dim}, {n_params:,} parameters", flush=True)
    if not prior.iterative_fit:
        unused = [f"--{k.replace('_', '-')}" for k in _CLOSED_FORM_UNUSED if k in given]
        note = f" ({', '.join(unused)} not used)" if unused else ""
        print(f"training run {run_name!r}: {prior.name} is fitted in closed form, one pass{note}", flush=True)
        return
    how = " (resumed)" if args.resume else f" (a new stage from {o['init_from']})" if o["init_from"] else ""
    print(f"training run {run_name!r}{how}: up to {o['max_epochs']} epochs", flush=True)


def _interrupted(run_dir: Path, run_name: str, out: str) -> None:
    last = run_dir / "last.ckpt"
    if last.is_file():
        print(
            f"\ninterrupted; {last} holds the last completed epoch. Continue with: poseprior train --run "
            f"{run_name} --out {out} --resume",
            file=sys.stderr,
        )
    else:
        print(
            f"\ninterrupted before the first epoch completed: nothing to resume in {run_dir}", file=sys.stderr
        )


def _finished(result: Any, run_name: str, o: dict[str, Any]) -> None:
    print(
        f"run {run_name!r} already finished ({result.epochs} epochs, --max-epochs {o['max_epochs']}); "
        f"nothing changed. Exported: {result.final}"
        + (f", {result.best}" if result.best else "")
        + ". To train longer, resume with a larger --max-epochs; to start a new stage: --init-from "
        f"{result.run_dir / 'last.ckpt'} --run NEW"
    )


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
    keys = (
        "val/round_trip_error",
        "val/reconstruction_error",
        "sample/mean_abs_err",
        "sample/std_abs_err",
        "sample/apd_ratio",
        "sample/min_std_ratio",
    )
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
    print(f"run record: {result.record} (poseprior train --config {result.record} --run NEW re-runs it)")
    print(f"training state: {run_dir}/last.ckpt (poseprior train --run {run_name} --out {args.out} --resume)")
    print(f"logs: tensorboard --logdir {Path(args.out) / 'lightning_logs'}")
