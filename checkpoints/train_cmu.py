"""Trains the pretrained CMU checkpoints in this folder and writes their model cards.

    python checkpoints/train_cmu.py [--priors gaussian joint_flow global_flow] [--threads 2]

Each prior is fitted with its defaults on the train split of the bundled CMU sample (early
stopping, for priors trained by gradient descent, on every 8th *training* file), scored on the
val split, saved as ``<name>.cmu/`` (config.json + model.safetensors) and given a README.md
model card with the measured numbers. tests/test_pretrained.py checks that every card's val NLL
is reproduced by loading the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import poseprior
from poseprior import metrics
from poseprior.amass import load_split
from poseprior.data import sample_path
from poseprior.evaluation import fit_prior

HERE = Path(__file__).resolve().parent
TUNE = HERE.parent / "docs" / "tune"  # results of benchmarks/tune_defaults.py


def robustness(prior: poseprior.PosePrior) -> str:
    """The card's paragraph on the broad component, from the leave-one-action-out protocol's results."""
    path = TUNE / f"{prior.name}.json"
    w, s = prior.broad_weight, prior.broad_scale
    head = f"- **Broad component**: `broad_weight={w:g}`, `broad_scale={s:g}` (the defaults)"
    if not path.is_file():
        return head + "; not chosen by the leave-one-action-out protocol (no results for this prior)."
    res = json.loads(path.read_text())["default"]

    def loao(key: str) -> float:
        return sum(f[key] for f in res["folds"].values()) / len(res["folds"])

    key, plain = f"w={w},s={s}", "w=0.0,s=1.0"
    return (
        head + ", chosen by the leave-one-action-out protocol (`benchmarks/tune_defaults.py`, "
        "[docs/generalization.md](../../docs/generalization.md)): fit on all other actions of the CMU sample, "
        "score the held-out action, average over the actions. In the protocol's own runs (their val NLL "
        "can differ from this checkpoint's in the second decimal: thread count and summation order):\n"
        f"- Without it: val NLL {res['val'][plain]:.2f}, leave-one-action-out mean NLL {loao(plain):.2f}.\n"
        f"- With it: val NLL {res['val'][key]:.2f}, leave-one-action-out mean NLL {loao(key):.2f}."
    )

CARD = """# {name}.cmu — `{prior}` prior trained on the bundled CMU sample

- **Prior**: `{prior}` ({cls}), layout `{layout}` ({joints} joints), defaults of poseprior {version}.
- **Density**: {exactness} `log_prob` over D = {dim} modelled axis-angle values; excluded (constant
  in the training data): {excluded}.
- **Parameters**: {params:,}.
- **Data**: CMU Graphics Lab Motion Capture Database, retargeted to SMPL-H body poses
  (`poseprior/data/cmu/`, train split: {n_train} poses from {f_train} files; val split: {n_val}
  poses from {f_val} files). No finger motion; collars and the off-axis knee/elbow values never
  move in this data (see the data README).
- **Training**: `python checkpoints/train_cmu.py --priors {prior}` (seed {seed}, {threads} threads,
  {seconds:.0f} s). Early stopping, where used, holds out every 8th training file, never val.

## Metrics (nats per pose; BPD = NLL / (D ln 2))

| split | NLL | BPD |
|---|---|---|
| train | {train_nll:.4f} | {train_bpd:.4f} |
| val | {val_nll:.4f} | {val_bpd:.4f} |

val NLL: {val_nll:.4f}

These are in-distribution numbers on a small data set. Held-out motion is another matter:

{robustness}

## Licence

The weights are derived from the CMU data, which are free to use, including in commercial
products, but may not be resold directly (see `poseprior/data/cmu/README.md`). Unlike priors
trained on AMASS, whose licence forbids commercial use, these can ship in commercial products.
CMU asks for this acknowledgement: "The data used in this project was obtained from
mocap.cs.cmu.edu. The database was created with funding from NSF EIA-0196217."

## Use

```python
import poseprior
prior = poseprior.load_pretrained("{name}.cmu")
```
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--priors", nargs="*", default=["gaussian", "joint_flow", "global_flow"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, val = load_split(sample_path(), "train"), load_split(sample_path(), "val")
    for name in args.priors:
        layout = poseprior.prior_class(name).default_layout
        xt, xv = train.poses_for(layout), val.poses_for(layout)
        start = time.perf_counter()
        prior, _ = fit_prior(name, train, layout=layout, generator=torch.Generator().manual_seed(args.seed))
        seconds = time.perf_counter() - start
        out = prior.save(HERE / f"{name}.cmu")
        tn, vn = metrics.nll(prior, xt), metrics.nll(prior, xv)
        d = prior.dim
        (out / "README.md").write_text(
            CARD.format(
                name=name,
                prior=name,
                cls=type(prior).__name__,
                layout=layout,
                joints=len(prior.layout),
                version=poseprior.__version__,
                exactness="exact" if prior.has_exact_log_prob else "estimated (IWAE)",
                dim=d,
                excluded=", ".join(prior.excluded_names()) or "none",
                params=sum(p.numel() for p in prior.parameters()),
                n_train=len(xt),
                f_train=train.num_files,
                n_val=len(xv),
                f_val=val.num_files,
                seed=args.seed,
                threads=args.threads,
                seconds=seconds,
                train_nll=tn,
                train_bpd=tn / (d * math.log(2)),
                val_nll=vn,
                val_bpd=vn / (d * math.log(2)),
                robustness=robustness(prior),
            )
        )
        print(f"{name}.cmu: val NLL {vn:.4f} (D={d}), {seconds:.0f} s -> {out}")


if __name__ == "__main__":
    main()
