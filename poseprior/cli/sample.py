"""``poseprior sample``: draw poses from a checkpoint into an npz (and a stick-figure PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import PosePriorError
from ..formats.layouts import get_layout
from .common import check_writable, load_prior, positive_int, write_samples

if TYPE_CHECKING:
    from ..base import PosePrior


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw poses from a checkpoint into an npz (and a stick-figure PNG)")
    p.add_argument("checkpoint", help="a save() folder, a run folder, a Lightning .ckpt or a pretrained name")
    p.add_argument("-n", "--num-samples", type=positive_int, default=16)
    p.add_argument(
        "--out", required=True, help="the npz to write (AMASS-style SMPL-H poses + the raw samples)"
    )
    p.add_argument("--png", help="also draw the first --png-count samples as stick figures into this picture")
    p.add_argument("--png-count", type=positive_int, default=16)
    p.add_argument("--cols", type=positive_int, default=4, help="stick figures per row")
    p.add_argument("--view", choices=["front", "side"], default="front")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _body_poses(samples: torch.Tensor, prior: PosePrior) -> torch.Tensor:
    from ..formats.adapters import to_layout

    missing = [j for j in get_layout("body").joints if j not in prior.layout.joints]
    if missing:
        raise PosePriorError(
            f"--png draws body stick figures, but prior layout {prior.layout.name!r} lacks body joints "
            f"({', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}); omit --png for this prior"
        )
    return to_layout(samples, prior.layout, "body")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_writable(out.parent, "--out")
    if args.png:
        check_writable(Path(args.png).parent, "--png")
    prior = load_prior(args.checkpoint)
    if args.png:
        _body_poses(torch.zeros(0, *prior.event_shape), prior)  # fail before writing anything
    gen = torch.Generator().manual_seed(args.seed)
    samples = prior.sample(args.num_samples, generator=gen)
    log_prob = prior.log_prob(samples).detach()
    out.parent.mkdir(parents=True, exist_ok=True)
    written = write_samples(out, samples.cpu(), prior.layout.name)  # NAME -> NAME.npz, as np.savez
    print(
        f"{args.num_samples} samples of {prior.name} (layout {prior.layout.name!r}, D = {prior.dim}, "
        f"seed {args.seed}); "
        f"mean log_prob {float(log_prob.mean()):.2f}"
    )
    print(
        f"wrote {written} (poses: SMPL-H layout, root and unmodelled joints zero; "
        f"samples: {tuple(samples.shape)})"
    )
    if args.png:
        from ..plot import plot_poses

        k = min(args.num_samples, args.png_count)
        body = _body_poses(samples[:k].cpu(), prior)
        titles = [f"#{i}  log p {float(lp):.1f}" for i, lp in enumerate(log_prob[:k])]
        png = plot_poses(body, args.png, cols=args.cols, titles=titles, view=args.view)
        print(f"wrote {png} ({k} stick figures, {args.view} view)")
    return 0
