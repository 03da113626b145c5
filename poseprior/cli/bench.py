"""``poseprior bench``: density, sample-quality and speed benchmark of the priors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from .common import check_writable, existing_folder, non_negative_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="density, sample-quality and speed benchmark of the priors (markdown, JSON, PNG plots)"
    )
    p.add_argument(
        "--data", help="folder with a splits.json (default: the bundled CMU data, with its unseen split)"
    )
    p.add_argument("--out", default="results/bench", help="output folder")
    p.add_argument(
        "--priors", nargs="*", help="priors to run (default: every prior whose default layout is --layout)"
    )
    p.add_argument("--layout", default="body")
    p.add_argument(
        "--loao",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also run the leave-one-group-out protocol (one fit per action or subject and prior: "
        "much longer than the default run); off by default",
    )
    p.add_argument(
        "--threads", type=non_negative_int, default=2, help="torch threads for the speed measurements"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="very short training (smoke test; numbers not representative)"
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import bench, list_priors, prior_class
    from ..data import training_splits

    check_writable(args.out, "--out")
    if args.data is not None:
        existing_folder(args.data)
    train, val, unseen = training_splits(args.data)
    names = args.priors or [n for n in list_priors() if prior_class(n).default_layout == args.layout]
    specs = bench.default_specs(names)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = bench.run(
        specs,
        train,
        val,
        args.out,
        unseen=unseen,
        layout=args.layout,
        loao=args.loao,
        quick=args.quick,
        seed=args.seed,
        progress=args.progress,
    )
    print(bench.render(rows, quick=args.quick))
    print(f"wrote bench.md, bench.json, nll.png and speed.png to {args.out}")
    return 0
