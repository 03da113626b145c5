"""``poseprior eval``: the NLL / bits-per-dimension table of checkpoints on a data folder."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..evaluation import markdown
from .common import existing_folder, load_prior, positive_float, positive_int


def add_parser(sub: Any) -> None:
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
    p.add_argument("--fps", type=positive_float, help="subsample every file to this frame rate")
    p.add_argument("--batch-size", type=positive_int, default=4096)
    p.set_defaults(func=run)


def _eval_data(folder: Path, splits: Sequence[str] | None, fps: float | None) -> list[tuple[str, Any]]:
    from ..amass import load_folder, load_split, load_splits

    if (folder / "splits.json").is_file():
        names = list(splits or load_splits(folder / "splits.json"))
        return [(name, load_split(folder, name, fps=fps)) for name in names]
    if splits:
        raise DataError(
            f"{str(folder)!r} has no splits.json, so --split {' '.join(splits)} cannot be selected"
        )
    return [("all", load_folder(folder, fps=fps))]


def run(args: argparse.Namespace) -> int:
    from .. import metrics

    folder = existing_folder(args.data)
    priors = [(spec, load_prior(spec)) for spec in args.checkpoints]
    data = _eval_data(folder, args.split, args.fps)
    rows = []
    for spec, prior in priors:
        for split, d in data:
            x = d.poses_for(prior.layout).to(prior.data_mean.dtype)
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
    print(markdown(["checkpoint", "prior", "layout", "D", "log_prob", "split", "poses", "NLL", "BPD"], rows))
    return 0
