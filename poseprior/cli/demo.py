"""``poseprior demo``: fit every prior on a data folder and print the NLL / BPD table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from .common import check_writable, existing_folder, positive_int, write_samples


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="fit every prior on a data folder (default: the bundled CMU sample) and print the NLL/BPD table",
    )
    p.add_argument(
        "--data", help="folder of AMASS-format npz files with a splits.json (default: the bundled CMU data)"
    )
    p.add_argument(
        "--out", default="poseprior-demo", help="output folder (results.json, samples, checkpoints)"
    )
    p.add_argument("--priors", nargs="*", help="priors to run (default: all registered)")
    p.add_argument("--layout", help="joint layout for every prior (default: each prior's default)")
    p.add_argument("--num-samples", type=positive_int, default=500)
    p.add_argument(
        "--loao",
        action="store_true",
        help="also report the leave-one-group-out mean NLL (one extra fit per action or subject and prior)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="very short training (smoke test; numbers not representative)"
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    p.set_defaults(func=run)


def _runs(args: argparse.Namespace, train: Any) -> list[tuple[str, dict, str]]:
    """(prior, constructor arguments, layout) of every row, skipping priors the data cannot fit."""
    from .. import list_priors, prior_class
    from ..evaluation import bench_specs, skip_reason

    runs: list[tuple[str, dict, str]] = []
    for name in args.priors or list_priors():
        layout = args.layout or prior_class(name).default_layout
        reason = skip_reason(name, layout, train)
        if reason is not None:
            print(f"skipping {name} on layout {layout!r}: {reason}")
            continue
        runs += [(name, kwargs, layout) for _, kwargs in bench_specs([name])]
    return runs


def run(args: argparse.Namespace) -> int:
    from ..data import training_splits
    from ..evaluation import evaluate, label, leave_one_group_out, markdown_table

    check_writable(args.out, "--out")
    if args.data is not None:
        existing_folder(args.data)
    train, val, unseen = training_splits(args.data)
    print(
        f"data: {args.data or 'the bundled CMU data (poseprior.data.load_bundled)'}\n"
        f"  train: {train.describe()}\n"
        f"  val:   {val.describe()}" + (f"\n  unseen: {unseen.describe()}" if unseen is not None else "")
    )
    runs = _runs(args, train)
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, kwargs, layout in runs:
        key = label(name, kwargs)
        print(f"fitting {key} on {layout!r} ...", flush=True)
        r, priors = evaluate(
            [(name, kwargs)],
            train,
            val,
            unseen=unseen,
            layout=layout,
            quick=args.quick,
            generator=gen,
            progress=args.progress,
        )
        rows += r
        prior = priors[key]
        slug = key.replace("(", "-").replace(")", "").replace("=", "-").replace(", ", "_")
        prior.save(out / "checkpoints" / slug)
        write_samples(out / f"samples_{slug}.npz", prior.sample(args.num_samples, generator=gen), layout)
        if args.loao:
            print(f"leave-one-group-out for {key} ...", flush=True)
            res = leave_one_group_out([(name, kwargs)], train, layout=layout, quick=args.quick, generator=gen)
            r[0].extra["loao_mean"] = res[key]["mean"]
    print()
    if args.quick:
        print("(quick run: iterative priors trained for only a few epochs; numbers are not representative)")
    print(
        "NLL in nats per pose on the validation split (val) and on the unseen subjects (unseen); "
        "BPD = NLL / (D ln 2); D = the values in the density (learned and anatomical)."
    )
    if args.loao:
        print(
            "loao_mean: mean NLL over leave-one-group-out folds (every action or subject of the training "
            "data "
            "held out in turn, fit on the others)."
        )
    print()
    print(markdown_table(rows, ("loao_mean",) if args.loao else ()))
    (out / "results.json").write_text(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    print(f"\nwrote {out / 'results.json'}, samples_<prior>.npz and checkpoints/<prior>/ to {out}")
    return 0
