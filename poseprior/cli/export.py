"""``poseprior export``: the prior of a Lightning ``.ckpt`` as ``config.json`` + ``model.safetensors``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .common import check_writable, import_training


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="write the prior of a Lightning .ckpt as config.json + model.safetensors"
    )
    p.add_argument("checkpoint", help="a .ckpt written by poseprior train")
    p.add_argument("--out", required=True, help="folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    if path.suffix != ".ckpt":
        raise CheckpointError(f"export takes a Lightning .ckpt written by poseprior train, got {str(path)!r}")
    check_writable(args.out, "--out")
    out = import_training().export_checkpoint(path, args.out)
    print(f"wrote {out}/config.json and {out}/model.safetensors (load with poseprior.load)")
    return 0
