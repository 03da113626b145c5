"""The ``poseprior`` command line.

``poseprior list`` names the registered priors and layouts; ``poseprior demo`` fits every
registered prior on the bundled CMU sample (or ``--data DIR``) and prints the table of validation
NLL / bits per dimension. ``poseprior train`` trains one prior with PyTorch Lightning
(TensorBoard logs, checkpoints, ``--resume``, multi-process ``--strategy ddp``); ``eval`` prints the
NLL/BPD table of checkpoints on a data folder; ``sample`` draws poses (and a stick-figure PNG);
``convert`` changes the joint layout or rotation representation of npz pose files; ``export``
turns a Lightning ``.ckpt`` into a ``config.json`` + ``model.safetensors`` folder.

Output layout of ``train`` (under ``--out``, default the current folder)::

    checkpoints/<run>/last.ckpt          Lightning training state (a pickle): for --resume only
    checkpoints/<run>/best-epochNNN.ckpt the epoch with the lowest validation NLL (training state)
    checkpoints/<run>/final/             the last epoch, exported: config.json + model.safetensors
    checkpoints/<run>/best/              the best epoch, exported the same way
    lightning_logs/<run>/                TensorBoard logs (tensorboard --logdir lightning_logs)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import CheckpointError, DataError, PosePriorError, ShapeError, UnknownPriorError
from .formats.layouts import JointLayout, get_layout, list_layouts

if TYPE_CHECKING:
    from .base import PosePrior

log = logging.getLogger("poseprior")


def _cmd_list(args: argparse.Namespace) -> int:
    from . import list_layouts, list_priors, prior_class

    print("priors:")
    for name in list_priors():
        cls = prior_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:12s} {'exact' if cls.has_exact_log_prob else 'estimate':8s} {doc}")
    print("layouts:", ", ".join(list_layouts()))
    return 0


def _data_folder(path: str | None) -> Path:
    if path is None:
        from .data import sample_path

        return sample_path()
    return Path(path)


def _write_samples(path: Path, samples: torch.Tensor, layout: str) -> None:
    """Writes samples as an AMASS-style SMPL-H npz (root, missing joints and hands zero) + the raw array."""
    from .formats.adapters import to_layout

    smplh = to_layout(samples.float(), layout, "smplh", missing="zero").reshape(len(samples), -1)
    np.savez(
        path,
        poses=smplh.numpy(),
        trans=np.zeros((len(samples), 3), np.float32),
        betas=np.zeros(16, np.float32),
        gender=np.str_("neutral"),
        mocap_framerate=np.float64(30.0),
        samples=samples.numpy(),
        layout=np.str_(layout),
        note=np.str_(
            "samples of a poseprior prior; poses: SMPL-H layout with the root and unmodelled joints zero"
        ),
    )


DEMO_VARIANTS: dict[str, list[dict]] = {"gaussian": [{"covariance": "diagonal"}, {}]}
"""Constructor arguments of the rows the demo shows per prior (default: one row with the defaults)."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import list_priors
    from .amass import load_split
    from .evaluation import evaluate, label, leave_one_group_out, markdown_table, skip_reason

    folder = _data_folder(args.data)
    train, val = load_split(folder, "train"), load_split(folder, "val")
    print(f"data: {folder}\n  train: {train.describe()}\n  val:   {val.describe()}")
    from . import prior_class

    names = args.priors or list_priors()
    runs: list[tuple[str, dict, str]] = []
    for name in names:
        layout = args.layout or prior_class(name).default_layout
        reason = skip_reason(name, layout, train)
        if reason is not None:
            print(f"skipping {name} on layout {layout!r}: {reason}")
            continue
        for kwargs in DEMO_VARIANTS.get(name, [{}]):
            runs.append((name, kwargs, layout))
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    every = None  # every split file, loaded once, for the leave-one-action-out folds
    if args.loao:
        from .amass import load_folder

        every = load_folder(folder, files=[Path(f).name for f in (*train.files, *val.files)])
    rows = []
    for name, kwargs, layout in runs:
        key = label(name, kwargs)
        print(f"fitting {key} on {layout!r} ...", flush=True)
        r, priors = evaluate(
            [(name, kwargs)],
            train,
            val,
            layout=layout,
            quick=args.quick,
            generator=gen,
            progress=args.progress,
        )
        rows += r
        prior = priors[key]
        slug = key.replace("(", "-").replace(")", "").replace("=", "-").replace(", ", "_")
        prior.save(out / "checkpoints" / slug)
        _write_samples(out / f"samples_{slug}.npz", prior.sample(args.num_samples, generator=gen), layout)
        if every is not None:
            print(f"leave-one-action-out for {key} ...", flush=True)
            res = leave_one_group_out([(name, kwargs)], every, layout=layout, quick=args.quick, generator=gen)
            r[0].extra["loao_mean"] = res[key]["mean"]
    print()
    if args.quick:
        print("(quick run: iterative priors trained for only a few epochs; numbers are not representative)")
    print("NLL in nats per pose on the validation split; BPD = NLL / (D ln 2); D = modelled values.")
    if args.loao:
        print("loao_mean: mean NLL over leave-one-action-out folds (fit on all other actions, score the held-out one).")
    print()
    print(markdown_table(rows, ("loao_mean",) if args.loao else ()))
    (out / "results.json").write_text(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    print(f"\nwrote {out / 'results.json'}, samples_<prior>.npz and checkpoints/<prior>/ to {out}")
    return 0


# ---------------------------------------------------------------------------------- shared helpers
def _existing_folder(path: str | Path, what: str = "data folder") -> Path:
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"{what} {str(folder)!r} does not exist; check the path given to --data")
    if not folder.is_dir():
        raise DataError(
            f"{what} {str(folder)!r} is not a folder; --data takes a folder of npz files with a splits.json"
        )
    return folder


def _parse_prior_args(items: Sequence[str] | None) -> dict[str, Any]:
    """``["blocks=2", "transform=coupling"]`` -> ``{"blocks": 2, "transform": "coupling"}``.

    Values are parsed as JSON when they parse (numbers, booleans, lists), else kept as strings.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise PosePriorError(
                f"--prior-args takes KEY=VALUE items (e.g. blocks=2 transform=coupling), got {item!r}"
            )
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


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


def _import_training() -> Any:
    try:
        from . import training
    except ImportError as e:
        raise PosePriorError(str(e)) from None
    return training


def _load_prior(spec: str) -> PosePrior:
    """A prior from a save() folder, a training run folder, a Lightning .ckpt or a pretrained name."""
    from . import list_pretrained, list_priors, load, load_pretrained

    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").exists():
            for sub in ("best", "final"):  # a run folder checkpoints/<run>/ written by `poseprior train`
                if (path / sub / "config.json").is_file():
                    print(f"{spec}: a training run folder; using its {sub}/ export", file=sys.stderr)
                    return load(path / sub)
        return load(path)
    if path.is_file():
        if path.suffix != ".ckpt":
            raise CheckpointError(
                f"{spec!r} is a file but not a Lightning .ckpt; a checkpoint is a folder with config.json "
                "and "
                "model.safetensors (prior.save) or a .ckpt written by poseprior train"
            )
        return _import_training().prior_from_checkpoint(path)
    if path.exists() or os.sep in spec or spec.startswith(".") or spec.endswith(".ckpt"):
        raise CheckpointError(f"checkpoint {spec!r} does not exist; check the path")
    # A name: "arch.tag" of a shipped pretrained checkpoint, or a prior with exactly one of them.
    # This is the hook for a pretrained registry: it goes through poseprior.load_pretrained.
    if spec in list_priors():
        names = list_pretrained(f"{spec}.*")
        if len(names) != 1:
            raise CheckpointError(
                f"prior {spec!r} has {'no' if not names else len(names)} pretrained checkpoint(s)"
                f"{': ' + ', '.join(names) + ' (pass one of these names)' if names else ''}; "
                f"train one with: poseprior train {spec} --data DIR, then pass checkpoints/<run>/best"
            )
        spec = names[0]
    try:
        return load_pretrained(spec)
    except UnknownPriorError as e:
        raise CheckpointError(
            f"{spec!r} is neither a checkpoint folder, a .ckpt file nor a pretrained checkpoint name ({e})"
        ) from None


def _markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _metric(metrics: dict[str, float], key: str, fmt: str = ".2f") -> str:
    return format(metrics[key], fmt) if key in metrics and math.isfinite(metrics[key]) else "-"


# ---------------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    from . import create, prior_class

    folder = _existing_folder(args.data)
    cls = prior_class(args.prior)  # an unknown name fails here, before Lightning is imported
    kwargs = _parse_prior_args(args.prior_args)
    layout = args.layout or kwargs.pop("layout", None) or cls.default_layout
    run = args.run or args.prior
    out = Path(args.out)
    run_dir = out / "checkpoints" / run
    child = _is_launched_child()
    if not args.resume and not child and (run_dir / "last.ckpt").exists():
        raise CheckpointError(
            f"run {run!r} already has checkpoints in {str(run_dir)!r}; pass --resume to continue it, or "
            "--run NAME for a new run"
        )
    training = _import_training()
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
        prior.initialize(dm.train_poses.to(prior.constant_values.dtype))
    if not child:
        n_params = sum(p.numel() for p in prior.parameters())
        print(
            f"prior: {prior.name} {prior.get_config()}\n  D = {prior.dim}, {n_params:,} parameters",
            flush=True,
        )
        print(
            f"training run {run!r}{' (resumed)' if args.resume else ''}: up to {args.max_epochs} epochs",
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
                run=run,
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
    m = result.metrics
    print()
    print(
        _markdown(
            [
                "run",
                "prior",
                "layout",
                "D",
                "epochs",
                "train loss",
                "train NLL",
                "val NLL",
                "val BPD",
                "best val NLL",
            ],
            [
                [
                    run,
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
            ],
        )
    )
    extra = [
        f"{k} {_metric(m, k, '.3g')}"
        for k in (
            "val/round_trip_error",
            "val/reconstruction_error",
            "sample/mean_abs_err",
            "sample/std_abs_err",
        )
        if k in m
    ]
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
    print(f"training state: {run_dir}/last.ckpt (poseprior train ... --run {run} --resume)")
    print(f"logs: tensorboard --logdir {out / 'lightning_logs'}")
    return 0


# ---------------------------------------------------------------------------------- eval
def _eval_data(folder: Path, splits: Sequence[str] | None, fps: float | None) -> list[tuple[str, Any]]:
    from .amass import load_folder, load_split, load_splits

    if (folder / "splits.json").is_file():
        names = list(splits or load_splits(folder / "splits.json"))
        return [(name, load_split(folder, name, fps=fps)) for name in names]
    if splits:
        raise DataError(
            f"{str(folder)!r} has no splits.json, so --split {' '.join(splits)} cannot be selected"
        )
    return [("all", load_folder(folder, fps=fps))]


def _cmd_eval(args: argparse.Namespace) -> int:
    from . import metrics

    folder = _existing_folder(args.data)
    priors = [(spec, _load_prior(spec)) for spec in args.checkpoints]
    data = _eval_data(folder, args.split, args.fps)
    rows = []
    for spec, prior in priors:
        for split, d in data:
            x = d.poses_for(prior.layout).to(prior.constant_values.dtype)
            nll = metrics.nll(prior, x, batch_size=args.batch_size)
            rows.append(
                [
                    spec,
                    prior.name,
                    prior.layout.name,
                    str(prior.dim),
                    "exact" if prior.has_exact_log_prob else "estimate",
                    split,
                    str(len(x)),
                    f"{nll:.2f}",
                    f"{nll / (prior.dim * math.log(2)):.3f}",
                ]
            )
    print(f"data: {folder}")
    print("NLL in nats per pose over the D modelled values; BPD = NLL / (D ln 2).\n")
    print(_markdown(["checkpoint", "prior", "layout", "D", "log_prob", "split", "poses", "NLL", "BPD"], rows))
    return 0


# ---------------------------------------------------------------------------------- sample
def _body_poses(samples: torch.Tensor, prior: PosePrior) -> torch.Tensor:
    from .formats.adapters import to_layout

    missing = [j for j in get_layout("body").joints if j not in prior.layout.joints]
    if missing:
        raise PosePriorError(
            f"--png draws body stick figures, but prior layout {prior.layout.name!r} lacks body joints "
            f"({', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}); omit --png for this prior"
        )
    return to_layout(samples, prior.layout, "body")


def _cmd_sample(args: argparse.Namespace) -> int:
    if args.num_samples < 1:
        raise PosePriorError(f"-n must be >= 1, got {args.num_samples}")
    prior = _load_prior(args.checkpoint)
    if args.png:
        _body_poses(torch.zeros(0, *prior.event_shape), prior)  # fail before writing anything
    gen = torch.Generator().manual_seed(args.seed)
    samples = prior.sample(args.num_samples, generator=gen)
    log_prob = prior.log_prob(samples).detach()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_samples(out, samples.cpu(), prior.layout.name)
    print(
        f"{args.num_samples} samples of {prior.name} (layout {prior.layout.name!r}, D = {prior.dim}, "
        f"seed {args.seed}); "
        f"mean log_prob {float(log_prob.mean()):.2f}"
    )
    print(
        f"wrote {out} (poses: SMPL-H layout, root and unmodelled joints zero; "
        f"samples: {tuple(samples.shape)})"
    )
    if args.png:
        from .plot import plot_poses

        k = min(args.num_samples, args.png_count)
        body = _body_poses(samples[:k].cpu(), prior)
        titles = [f"#{i}  log p {float(lp):.1f}" for i, lp in enumerate(log_prob[:k])]
        plot_poses(body, args.png, cols=args.cols, titles=titles, view=args.view)
        print(f"wrote {args.png} ({k} stick figures, {args.view} view)")
    return 0


# ---------------------------------------------------------------------------------- convert
_DETECT_ORDER = ("smplh", "smplx", "smplx53", "smpl", "body", "body_hands", "hands")


def _detect_layout(joints: int) -> str:
    found = [n for n in _DETECT_ORDER if len(get_layout(n)) == joints]
    if not found:
        raise PosePriorError(
            f"cannot tell the layout of poses with {joints} joints; pass --from LAYOUT "
            f"(one of {', '.join(list_layouts())})"
        )
    return found[0]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{str(path)!r} does not exist or is not a file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}
    except (ValueError, OSError, EOFError, KeyError) as e:
        raise DataError(
            f"{str(path)!r} is not a readable npz archive without pickled objects ({type(e).__name__}: {e})"
        ) from None
    except AttributeError:
        raise DataError(f"{str(path)!r} holds a single .npy array, not an npz archive (np.savez)") from None


def _convert_layout(
    x: torch.Tensor, src: JointLayout, dst: JointLayout, args: argparse.Namespace
) -> torch.Tensor:
    """Poses (N, J_src, 3) -> (N, J_dst, 3): the dedicated adapters where they exist, else by joint name."""
    from .formats import adapters

    pair = (src.name, dst.name)
    if pair == ("smplx53", "smplx"):
        return adapters.smplx53_to_smplx(x)
    if pair == ("smplx", "smplx53"):
        return adapters.smplx_to_smplx53(x, drop_nonzero_eyes=args.drop_nonzero)
    if pair == ("smplh", "smplx"):
        return adapters.smplh_to_smplx(x, missing=args.missing)
    if pair == ("smplx", "smplh"):
        return adapters.smplx_to_smplh(x, drop_nonzero=args.drop_nonzero)
    dropped = [j for j in src.joints if j not in dst.joints]
    if dropped and not args.drop_nonzero:
        largest = x.index_select(1, torch.tensor(src.indices(dropped))).abs().amax(dim=(0, 2)).tolist()
        nonzero = [j for j, v in zip(dropped, largest, strict=True) if v != 0]
        if nonzero:
            raise DataError(
                f"converting {src.name!r} to {dst.name!r} drops joint(s) that are not zero: "
                f"{', '.join(nonzero[:6])}{' ...' if len(nonzero) > 6 else ''}; "
                "pass --drop-nonzero to drop them"
            )
    return adapters.to_layout(x, src, dst, missing=args.missing)


def _cmd_convert(args: argparse.Namespace) -> int:
    from .formats import adapters
    from .formats.rotations import REPRESENTATIONS, convert

    src_path, dst_path = Path(args.input), Path(args.output)
    arrays = _read_npz(src_path)
    if args.key not in arrays:
        raise DataError(
            f"{str(src_path)!r} has no {args.key!r} array (keys: {', '.join(arrays)}); pass --key"
        )
    poses = arrays[args.key]
    if not np.issubdtype(poses.dtype, np.floating):
        raise DataError(
            f"{str(src_path)!r}: {args.key!r} has dtype {poses.dtype}; expected floating-point poses"
        )
    rot_shape = REPRESENTATIONS[args.rotation]
    width = int(np.prod(rot_shape))
    if poses.ndim == 2:
        if poses.shape[1] % width:
            raise DataError(
                f"{str(src_path)!r}: {args.key!r} has {poses.shape[1]} columns, not a multiple of {width} "
                f"({args.rotation}); pass the right --rotation"
            )
        poses = poses.reshape(poses.shape[0], poses.shape[1] // width, *rot_shape)
    elif tuple(poses.shape[2:]) != rot_shape or poses.ndim < 3:
        raise DataError(
            f"{str(src_path)!r}: {args.key!r} has shape {poses.shape}; expected (N, J*{width}) or "
            f"(N, J, {', '.join(map(str, rot_shape))}) for --rotation {args.rotation}"
        )
    src = get_layout(args.source or _detect_layout(poses.shape[1]))
    dst = get_layout(args.to)
    x = torch.from_numpy(np.ascontiguousarray(poses))
    if args.rotation != "axis_angle":
        x = convert(x, args.rotation, "axis_angle")
    added = [j for j in dst.joints if j not in src.joints]
    dropped = [j for j in src.joints if j not in dst.joints]
    try:
        y = _convert_layout(x, src, dst, args)
    except ShapeError as e:  # the adapters name their keyword arguments; add the command-line spelling
        raise ShapeError(f"{e} (command line: --drop-nonzero, --missing zero)") from None
    if args.to_rotation != "axis_angle":
        y = convert(y, "axis_angle", args.to_rotation)
    else:
        y = adapters.flatten(y)  # AMASS style: (N, 3J)
    arrays[args.key] = y.numpy().astype(poses.dtype, copy=False)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    with open(dst_path, "wb") as f:  # a file object: np.savez would otherwise append .npz to other suffixes
        np.savez(f, **arrays)
    print(
        f"converted {x.shape[0]} poses in {src_path}: {src.name} ({len(src)} joints, {args.rotation}) -> "
        f"{dst.name} ({len(dst)} joints, {args.to_rotation}); "
        f"{args.key!r} now has shape {arrays[args.key].shape}"
    )
    if added:
        print(f"  zero-filled: {', '.join(added)}")
    if dropped:
        print(f"  dropped: {', '.join(dropped)}")
    print(f"wrote {dst_path}")
    return 0


# ---------------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    if path.suffix != ".ckpt":
        raise CheckpointError(f"export takes a Lightning .ckpt written by poseprior train, got {str(path)!r}")
    out = _import_training().export_checkpoint(path, args.out)
    print(f"wrote {out}/config.json and {out}/model.safetensors (load with poseprior.load)")
    return 0


# ---------------------------------------------------------------------------------- bench
def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench, list_priors
    from .amass import load_folder, load_split

    folder = _data_folder(args.data)
    train, val = load_split(folder, "train"), load_split(folder, "val")
    names = args.priors or [n for n in list_priors() if prior_class_default_layout(n) == args.layout]
    specs = bench.default_specs(names)
    all_data = load_folder(folder, files=[*(Path(f).name for f in train.files), *(Path(f).name for f in val.files)]) if args.loao else None
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = bench.run(specs, train, val, args.out, layout=args.layout, all_data=all_data, quick=args.quick,
                     seed=args.seed, progress=args.progress)
    print(bench.render(rows, quick=args.quick))
    print(f"wrote bench.md, bench.json, nll.png and speed.png to {args.out}")
    return 0


def prior_class_default_layout(name: str) -> str:
    from . import prior_class

    return prior_class(name).default_layout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poseprior", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered priors and joint layouts")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "demo",
        help="fit every prior on a data folder (default: the bundled CMU sample) and print the NLL/BPD table",
    )
    p.add_argument(
        "--data", help="folder of AMASS-format npz files with a splits.json (default: bundled CMU sample)"
    )
    p.add_argument(
        "--out", default="poseprior-demo", help="output folder (results.json, samples, checkpoints)"
    )
    p.add_argument("--priors", nargs="*", help="priors to run (default: all registered)")
    p.add_argument("--layout", help="joint layout for every prior (default: each prior's default)")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument(
        "--loao",
        action="store_true",
        help="also report the leave-one-action-out mean NLL (one extra fit per action and prior)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="very short training (smoke test; numbers not representative)"
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    p.set_defaults(func=_cmd_demo)

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
    p.add_argument("--max-epochs", type=int, default=20, help="total epochs, counting those of a resumed run")
    p.add_argument("--batch-size", type=int, default=256, help="batch size per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="cosine anneals to 0 over --max-epochs; a resumed run keeps the schedule it started with",
    )
    p.add_argument("--patience", type=int, help="stop after this many epochs without a lower val NLL")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, the data order and the training noise"
    )
    p.add_argument(
        "--eval-samples", type=int, default=256, help="samples drawn each epoch for sample statistics"
    )
    p.add_argument("--fps", type=float, help="subsample every file to this frame rate")
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
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="NLL / bits-per-dimension table of checkpoints on a data folder")
    p.add_argument(
        "checkpoints",
        nargs="+",
        metavar="checkpoint",
        help="a save() folder, a run folder checkpoints/<run>, a Lightning .ckpt or a pretrained name",
    )
    p.add_argument(
        "--data", required=True, help="folder of AMASS-format npz files (with a splits.json: per split)"
    )
    p.add_argument("--split", nargs="*", help="splits to score (default: every split of splits.json)")
    p.add_argument("--fps", type=float, help="subsample every file to this frame rate")
    p.add_argument("--batch-size", type=int, default=4096)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("sample", help="draw poses from a checkpoint into an npz (and a stick-figure PNG)")
    p.add_argument("checkpoint", help="a save() folder, a run folder, a Lightning .ckpt or a pretrained name")
    p.add_argument("-n", "--num-samples", type=int, default=16)
    p.add_argument(
        "--out", required=True, help="the npz to write (AMASS-style SMPL-H poses + the raw samples)"
    )
    p.add_argument("--png", help="also draw the first --png-count samples as stick figures into this picture")
    p.add_argument("--png-count", type=int, default=16)
    p.add_argument("--cols", type=int, default=4, help="stick figures per row")
    p.add_argument("--view", choices=["front", "side"], default="front")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser(
        "convert",
        help="convert the poses of an npz file between joint layouts (e.g. smplx53 -> smplx) and rotations",
        description="Rewrite the poses array of an npz file in another joint layout (joints matched by name) "
        "and/or rotation representation; every other array is copied unchanged. Joints the source lacks "
        "are refused unless --missing zero; dropping non-zero joints needs --drop-nonzero.",
    )
    p.add_argument("input", help="npz file")
    p.add_argument("output", help="npz file to write")
    p.add_argument("--to", required=True, choices=list_layouts(), help="target layout")
    p.add_argument(
        "--from",
        dest="source",
        choices=list_layouts(),
        help="source layout (default: from the joint count: 52 smplh, 55 smplx, 53 smplx53, 24 smpl, ...)",
    )
    p.add_argument("--key", default="poses", help="the array holding the poses")
    p.add_argument(
        "--rotation",
        choices=["axis_angle", "matrix", "rot6d", "quaternion"],
        default="axis_angle",
        help="representation of the input poses",
    )
    p.add_argument(
        "--to-rotation",
        choices=["axis_angle", "matrix", "rot6d", "quaternion"],
        default="axis_angle",
        help="representation of the output (axis_angle is written flat, (N, 3J), as in AMASS)",
    )
    p.add_argument(
        "--missing",
        choices=["error", "zero"],
        default="error",
        help="joints of the target that the source lacks: refuse (default) or fill with zeros",
    )
    p.add_argument("--drop-nonzero", action="store_true", help="allow dropping joints that are not zero")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "export", help="write the prior of a Lightning .ckpt as config.json + model.safetensors"
    )
    p.add_argument("checkpoint", help="a .ckpt written by poseprior train")
    p.add_argument("--out", required=True, help="folder to write")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "bench", help="density, sample-quality and speed benchmark of the priors (markdown, JSON, PNG plots)"
    )
    p.add_argument("--data", help="folder with a splits.json (default: the bundled CMU sample)")
    p.add_argument("--out", default="results/bench", help="output folder")
    p.add_argument("--priors", nargs="*", help="priors to run (default: every prior whose default layout is --layout)")
    p.add_argument("--layout", default="body")
    p.add_argument("--loao", action=argparse.BooleanOptionalAction, default=False,
                   help="also run the leave-one-action-out protocol (one fit per action and prior: "
                   "about 20 minutes on the bundled sample instead of a few); off by default")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the speed measurements")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="very short training (smoke test; numbers not representative)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except PosePriorError as e:
        print(f"poseprior {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
