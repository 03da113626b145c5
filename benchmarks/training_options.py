r"""What ``--precision bf16-mixed`` and ``--ema`` do to the validation NLL of every prior (issue 16).

For every registered prior, short ``poseprior.training.train`` runs on the bundled CMU sample (body
priors) or on synthetic hand poses (``hand_vae``; the CMU sample has no finger motion):

- ``32`` and ``bf16-mixed``: the val NLL of both (the densities stay float32 under autocast);
- what ``bf16-mixed`` gave before the densities were kept in float32: the float32-trained prior's
  val NLL (mean, and the largest per-pose change) with its density under bf16 autocast, and the
  val NLL of a ``bf16-mixed`` run with autocast reaching inside the density;
- ``ema``: the same run as ``32`` with EMA weights (decay ``--ema``) for validation and export.

Usage::

    python benchmarks/training_options.py [--epochs 3] [--ema 0.99] [--priors global_flow,joint_flow]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import poseprior
from poseprior import base
from poseprior.data import sample_path
from poseprior.metrics import nll
from poseprior.synthetic import synthetic_hand_poses
from poseprior.training import PoseDataModule, train


def hand_folder(root: Path, files: int = 6, frames: int = 1000) -> Path:
    """SMPL-H AMASS-format files whose left hand holds SYNTHETIC poses (5 train files, 1 val)."""
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    names = []
    for k in range(files):
        poses = np.zeros((frames, 156), np.float32)
        poses[:, 3:66] = 0.2 * torch.randn(frames, 63, generator=gen).numpy()
        poses[:, 66:111] = synthetic_hand_poses(frames, generator=gen).reshape(frames, 45).numpy()
        names.append(f"clip_{k}.npz")
        np.savez(root / names[-1], poses=poses, trans=np.zeros((frames, 3), np.float32),
                 mocap_framerate=np.float64(30.0))  # fmt: skip
    (root / "splits.json").write_text(json.dumps({"train": names[:-1], "val": names[-1:]}))
    return root


@contextlib.contextmanager
def autocast_inside() -> Iterator[None]:
    """Lets autocast reach the densities, as before they were kept in float32 (a measurement only)."""
    saved = base.full_precision
    base.full_precision = lambda device: contextlib.nullcontext()
    try:
        yield
    finally:
        base.full_precision = saved


def autocast_change(prior: poseprior.PosePrior, x: torch.Tensor) -> tuple[float, float]:
    """(change of the mean NLL, largest per-pose change of log p) with the density under bf16 autocast."""
    with torch.no_grad():
        lp = torch.cat([prior.log_prob(b) for b in x.split(4096)])
        with autocast_inside(), torch.autocast("cpu", dtype=torch.bfloat16):
            auto = torch.cat([prior.log_prob(b) for b in x.split(4096)]).float()
    return float(lp.mean() - auto.mean()), float((auto - lp).abs().max())


def one_prior(name: str, root: Path, epochs: int, ema: float) -> dict[str, float]:
    layout = poseprior.prior_class(name).default_layout
    folder = sample_path() if layout == "body" else hand_folder(root / "hands")
    dm = PoseDataModule(folder, layout, batch_size=256)
    dm.setup("fit")
    out: dict[str, float] = {}
    bf16 = {"precision": "bf16-mixed"}
    runs = (("32", {}), ("bf16-mixed", bf16), ("bf16 inside", bf16), ("ema", {"ema": ema}))
    for label, options in runs:
        if label == "ema" and not poseprior.prior_class(name).iterative_fit:
            continue
        with torch.random.fork_rng():
            torch.manual_seed(0)
            prior = poseprior.create(name, layout=layout)
        start = time.perf_counter()
        with autocast_inside() if label == "bf16 inside" else contextlib.nullcontext():
            result = train(prior, dm, root=root, run=f"{name}-{label}".replace(" ", "-"), max_epochs=epochs,
                           accelerator="cpu", num_eval_samples=256, **options)  # fmt: skip
        out[label] = nll(result.prior, dm.val_poses)
        out[f"{label} s"] = time.perf_counter() - start
        if label == "32":
            out["autocast mean"], out["autocast max"] = autocast_change(result.prior, dm.val_poses)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--ema", type=float, default=0.99)
    p.add_argument("--priors", default=None, help="comma-separated names (default: every registered prior)")
    args = p.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message=".*(does not have many workers|exists and is not empty|LeafSpec).*"
    )
    names = args.priors.split(",") if args.priors else poseprior.list_priors()
    head = ["prior", "val NLL 32", "bf16-mixed - 32", "before: density in bf16 - 32 (mean / max |d lp|)",
            "before: bf16-mixed run - 32", f"EMA {args.ema:g} - 32"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = one_prior(name, Path(tmp), args.epochs, args.ema)
            cells = [
                f"{r['32']:.3f}",
                f"{r['bf16-mixed'] - r['32']:+.4f}",
                f"{r['autocast mean']:+.3f} / {r['autocast max']:.3f}",
                f"{r['bf16 inside'] - r['32']:+.3f}",
                f"{r['ema'] - r['32']:+.3f}" if "ema" in r else "- (closed form)",
            ]
            print(f"| {name} | {' | '.join(cells)} |", flush=True)
    print(
        f"\n{args.epochs} epochs, batch 256, lr 1e-3, seed 0, default configurations; NLL in nats per pose."
    )


if __name__ == "__main__":
    main()
