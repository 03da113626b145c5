"""``poseprior import-smplify-gmm``: SMPLify's gmm_08.pkl as a ``gmm`` checkpoint (config.json + weights)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import check_writable

CARD = """# gmm, converted from SMPLify's mixture

Converted by `poseprior import-smplify-gmm` from `{source}` (the pose prior of SMPLify, Bogo et al.,
ECCV 2016). The weights remain under the licence you obtained them with; poseprior ships none.

- Layout `body`: the 21 body joints (63 axis-angle values). SMPLify's mixture is over SMPL's 69
  values (these 21 joints and SMPL's two hand joints); this is its exact marginal over the body.
- `log_prob` is the mixture density; `penalty(x, kind="max_component")` is SMPLify's energy up to a
  constant (not a normalized density).
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("import-smplify-gmm", help="convert SMPLify's gmm_08.pkl into a 'gmm' checkpoint")
    p.add_argument("file", help="SMPLify's gmm_08.pkl (a pickle of NumPy arrays; nothing else is unpickled)")
    p.add_argument("--out", required=True, help="folder to write (config.json + model.safetensors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..importers import import_smplify_gmm

    check_writable(args.out, "--out")
    prior = import_smplify_gmm(args.file)
    out = prior.save(args.out, model_card=CARD.format(source=Path(args.file).name))
    print(
        f"wrote {out}/config.json and {out}/model.safetensors: gmm prior, {prior.n_components} components "
        "over the 63 body values (load with poseprior.load)"
    )
    return 0
