"""The ``poseprior`` command line.

``poseprior list`` names the registered priors and layouts; ``poseprior demo`` is the main job:
fit every registered prior on the bundled CMU sample (or ``--data DIR``), print the table of
validation NLL / bits per dimension, and write samples and checkpoints to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import PosePriorError

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
        note=np.str_("samples of a poseprior prior; poses: SMPL-H layout with the root and unmodelled joints zero"),
    )


DEMO_VARIANTS: dict[str, list[dict]] = {"gaussian": [{"covariance": "diagonal"}, {}]}
"""Constructor arguments of the rows the demo shows per prior (default: one row with the defaults)."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import list_priors
    from .amass import load_split
    from .evaluation import evaluate, label, markdown_table, skip_reason

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
    rows = []
    for name, kwargs, layout in runs:
        key = label(name, kwargs)
        print(f"fitting {key} on {layout!r} ...", flush=True)
        r, priors = evaluate(
            [(name, kwargs)], train, val, layout=layout, quick=args.quick, generator=gen, progress=args.progress
        )
        rows += r
        prior = priors[key]
        slug = key.replace("(", "-").replace(")", "").replace("=", "-").replace(", ", "_")
        prior.save(out / "checkpoints" / slug)
        _write_samples(out / f"samples_{slug}.npz", prior.sample(args.num_samples, generator=gen), layout)
    print()
    if args.quick:
        print(f"(quick run: iterative priors trained for only a few epochs; numbers are not representative)")
    print(f"NLL in nats per pose on the validation split; BPD = NLL / (D ln 2); D = modelled values.\n")
    print(markdown_table(rows))
    (out / "results.json").write_text(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    print(f"\nwrote {out / 'results.json'}, samples_<prior>.npz and checkpoints/<prior>/ to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poseprior", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered priors and joint layouts")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("demo", help="fit every prior on a data folder (default: the bundled CMU sample) and print the NLL/BPD table")
    p.add_argument("--data", help="folder of AMASS-format npz files with a splits.json (default: bundled CMU sample)")
    p.add_argument("--out", default="poseprior-demo", help="output folder (results.json, samples, checkpoints)")
    p.add_argument("--priors", nargs="*", help="priors to run (default: all registered)")
    p.add_argument("--layout", help="joint layout for every prior (default: each prior's default)")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="very short training (smoke test; numbers not representative)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    p.set_defaults(func=_cmd_demo)
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
