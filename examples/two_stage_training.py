"""Train a prior in two stages: stage 2 starts from stage 1's epoch-2 checkpoint with a lower learning rate.

Stage 1 trains ``global_flow`` on the bundled CMU sample and keeps a checkpoint every epoch
(``save_every=1``: ``checkpoints/stage1/epoch001.ckpt``, ``epoch002.ckpt``, ...). Stage 2 is a new
run that starts from the weights of ``epoch002.ckpt`` (``init_from``) with a fresh optimizer and a
10x lower learning rate. Each run folder holds a ``run.json`` recording its options, data and
start. The same with the command line::

    poseprior train global_flow --max-epochs 3 --lr 3e-3 --save-every 1 --run stage1 --data DIR
    poseprior train global_flow --max-epochs 2 --lr 3e-4 --run stage2 --data DIR \\
        --init-from checkpoints/stage1/epoch002.ckpt

    python examples/two_stage_training.py [--out two_stage_runs] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import torch

import poseprior
from poseprior.data import sample_path
from poseprior.training import PoseDataModule, train

TINY = {"blocks": 1, "hidden_features": 16, "residual_blocks": 1, "transform": "coupling"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="two_stage_runs", help="folder of checkpoints/ and lightning_logs/")
    p.add_argument("--quick", action="store_true", help="a tiny flow on 10 fps data: seconds")
    args = p.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message=".*(does not have many workers|exists and is not empty|LeafSpec).*"
    )
    dm = PoseDataModule(
        sample_path(), "body", batch_size=256, fps=10 if args.quick else None, train_eval_size=512
    )
    dm.setup("fit")
    options = {"accelerator": "cpu", "num_eval_samples": 64, "seed": 0}
    kwargs = TINY if args.quick else {}

    def fresh() -> poseprior.PosePrior:
        with torch.random.fork_rng():  # reproducible initial weights, the process's RNG untouched
            torch.manual_seed(0)
            return poseprior.create("global_flow", **kwargs)

    # overwrite=True: running the example again replaces its runs (without it, an existing run is refused).
    one = train(fresh(), dm, root=args.out, run="stage1", max_epochs=3, lr=3e-3, save_every=1, overwrite=True,
                **options)  # fmt: skip
    start = Path(args.out) / "checkpoints" / "stage1" / "epoch002.ckpt"
    two = train(fresh(), dm, root=args.out, run="stage2", max_epochs=2, lr=3e-4, init_from=start,
                overwrite=True, **options)  # fmt: skip

    record = json.loads((Path(args.out) / "checkpoints" / "stage2" / "run.json").read_text())
    print("| stage | starts from | lr | epochs | val NLL (nats/pose) |")
    print("|---|---|---|---|---|")
    print(f"| 1 | random weights | 3e-3 | {one.epochs} | {one.metrics['val/nll']:.2f} |")
    print(f"| 2 | stage 1, epoch 2 | 3e-4 | {two.epochs} | {two.metrics['val/nll']:.2f} |")
    source = record["init_from"]
    print(f"\nstage 2 started from {source['path']} (sha256 {source['sha256'][:12]}...)")
    print(f"exported: {two.final}")


if __name__ == "__main__":
    main()
