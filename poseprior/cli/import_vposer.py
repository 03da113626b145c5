"""``poseprior import-vposer``: a VPoser v2 checkpoint as a ``vae`` checkpoint (config.json + weights)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import check_writable, positive_float

CARD = """# vae, converted from VPoser v2

Converted by `poseprior import-vposer` from `{source}` (VPoser v2 of human_body_prior, Pavlakos et
al., CVPR 2019). The weights remain under the licence you obtained them with; poseprior ships none.

- Layout `body`: the 21 SMPL-X body joints (63 axis-angle values, pelvis excluded), as VPoser.
- `decode(z)` gives VPoser's `decode(z)['pose_body']`; `encode(x)` VPoser's q(z|x) (eval mode).
- `log_prob` is the IWAE estimate with a decoder standard deviation of {decoder_std} rad, which
  VPoser does not define: compare it with other priors knowing this choice.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "import-vposer", help="convert a VPoser v2 checkpoint (.ckpt or state dict) into a 'vae' checkpoint"
    )
    p.add_argument("checkpoint", help="VPoser v2 weights: human_body_prior's .ckpt or a saved state dict")
    p.add_argument("--out", required=True, help="folder to write (config.json + model.safetensors)")
    p.add_argument(
        "--decoder-std", type=positive_float, default=0.1,
        help="per-value std (rad) of p(x|z) for log_prob, which VPoser does not define (default 0.1)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..importers import import_vposer

    check_writable(args.out, "--out")
    prior = import_vposer(args.checkpoint, decoder_std=args.decoder_std)
    card = CARD.format(source=Path(args.checkpoint).name, decoder_std=args.decoder_std)
    out = prior.save(args.out, model_card=card)
    print(
        f"wrote {out}/config.json and {out}/model.safetensors: vae prior, {prior.latent_dim}-d latent, "
        f"{prior.hidden_features} neurons (load with poseprior.load)"
    )
    return 0
