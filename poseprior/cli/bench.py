"""``poseprior bench``: density, sample-quality and speed benchmark of the priors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from .common import check_writable, data_folder, non_negative_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="density, sample-quality and speed benchmark of the priors (markdown, JSON, PNG plots)"
    )
    p.add_argument("--data", help="folder with a splits.json (default: the bundled CMU sample)")
    p.add_argument("--out", default="results/bench", help="output folder")
    p.add_argument(
        "--priors", nargs="*", help="priors to run (default: every prior whose default layout is --layout)"
    )
    p.add_argument("--layout", default="body")
    p.add_argument(
        "--loao",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also run the leave-one-action-out protocol (one fit per action and prior: "
        "about 20 minutes on the bundled sample instead of a few); off by default",
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
    from ..amass import load_folder, load_split

    check_writable(args.out, "--out")
    folder = data_folder(args.data)
    train, val = load_split(folder, "train"), load_split(folder, "val")
    names = args.priors or [n for n in list_priors() if prior_class(n).default_layout == args.layout]
    specs = bench.default_specs(names)
    all_data = None
    if args.loao:
        all_data = load_folder(folder, files=[Path(f).name for f in (*train.files, *val.files)])
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = bench.run(
        specs,
        train,
        val,
        args.out,
        layout=args.layout,
        all_data=all_data,
        quick=args.quick,
        seed=args.seed,
        progress=args.progress,
    )
    print(bench.render(rows, quick=args.quick))
    print(f"wrote bench.md, bench.json, nll.png and speed.png to {args.out}")
    return 0
