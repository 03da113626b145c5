"""``poseprior convert``: the poses of an npz file in another joint layout or rotation representation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, ShapeError
from ..formats.layouts import get_layout, list_layouts
from .common import check_writable

ROTATIONS = ["axis_angle", "matrix", "rot6d", "quaternion"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="convert the poses of an npz file between joint layouts (e.g. smplx53 -> smplx) and rotations",
        description="Rewrite the poses array of an npz file in another joint layout (joints matched by name) "
        "and/or rotation representation; every other array is copied unchanged. Joints the source lacks "
        "are refused unless --missing zero; dropping non-zero joints needs --drop-nonzero.",
    )
    p.add_argument("input", help="npz file")
    p.add_argument("output", help="npz file to write")
    p.add_argument("--to", required=True, choices=list_layouts(), help="target layout")
    p.add_argument(
        "--from",
        dest="source",
        choices=list_layouts(),
        help="source layout (default: from the joint count: 52 smplh, 55 smplx, 53 smplx53, 24 smpl, ...)",
    )
    p.add_argument("--key", default="poses", help="the array holding the poses")
    p.add_argument(
        "--rotation", choices=ROTATIONS, default="axis_angle", help="representation of the input poses"
    )
    p.add_argument(
        "--to-rotation",
        choices=ROTATIONS,
        default="axis_angle",
        help="representation of the output (axis_angle is written flat, (N, 3J), as in AMASS)",
    )
    p.add_argument(
        "--missing",
        choices=["error", "zero"],
        default="error",
        help="joints of the target that the source lacks: refuse (default) or fill with zeros",
    )
    p.add_argument("--drop-nonzero", action="store_true", help="allow dropping joints that are not zero")
    p.set_defaults(func=run)


def _poses(arrays: dict[str, np.ndarray], args: argparse.Namespace, src_path: Path) -> np.ndarray:
    """The ``--key`` array as ``(N, J, *R)`` poses of the ``--rotation`` representation."""
    from ..formats.rotations import REPRESENTATIONS

    if args.key not in arrays:
        raise DataError(
            f"{str(src_path)!r} has no {args.key!r} array (keys: {', '.join(arrays)}); pass --key"
        )
    poses = arrays[args.key]
    if not np.issubdtype(poses.dtype, np.floating):
        raise DataError(
            f"{str(src_path)!r}: {args.key!r} has dtype {poses.dtype}; expected floating-point poses"
        )
    rot_shape = REPRESENTATIONS[args.rotation]
    width = int(np.prod(rot_shape))
    if poses.ndim == 2:
        if poses.shape[1] % width:
            raise DataError(
                f"{str(src_path)!r}: {args.key!r} has {poses.shape[1]} columns, not a multiple of {width} "
                f"({args.rotation}); pass the right --rotation"
            )
        return poses.reshape(poses.shape[0], poses.shape[1] // width, *rot_shape)
    if tuple(poses.shape[2:]) != rot_shape or poses.ndim < 3:
        raise DataError(
            f"{str(src_path)!r}: {args.key!r} has shape {poses.shape}; expected (N, J*{width}) or "
            f"(N, J, {', '.join(map(str, rot_shape))}) for --rotation {args.rotation}"
        )
    return poses


def run(args: argparse.Namespace) -> int:
    from ..amass import read_npz, write_npz
    from ..formats import adapters
    from ..formats.convert import convert_layout, detect_layout
    from ..formats.rotations import convert

    src_path, dst_path = Path(args.input), Path(args.output)
    check_writable(dst_path.parent, "output")
    arrays = read_npz(src_path)
    poses = _poses(arrays, args, src_path)
    try:
        src = get_layout(args.source or detect_layout(poses.shape[1]))
    except ShapeError as e:
        raise ShapeError(f"{e} (command line: --from LAYOUT)") from None
    dst = get_layout(args.to)
    x = torch.from_numpy(np.ascontiguousarray(poses))
    if args.rotation != "axis_angle":
        x = convert(x, args.rotation, "axis_angle")
    added = [j for j in dst.joints if j not in src.joints]
    dropped = [j for j in src.joints if j not in dst.joints]
    try:
        y = convert_layout(x, src, dst, missing=args.missing, drop_nonzero=args.drop_nonzero)
    except ShapeError as e:  # the adapters name their keyword arguments; add the command-line spelling
        raise ShapeError(f"{e} (command line: --drop-nonzero, --missing zero)") from None
    if args.to_rotation != "axis_angle":
        y = convert(y, "axis_angle", args.to_rotation)
    else:
        y = adapters.flatten(y)  # AMASS style: (N, 3J)
    arrays[args.key] = y.numpy().astype(poses.dtype, copy=False)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(dst_path, arrays)
    print(
        f"converted {x.shape[0]} poses in {src_path}: {src.name} ({len(src)} joints, {args.rotation}) -> "
        f"{dst.name} ({len(dst)} joints, {args.to_rotation}); "
        f"{args.key!r} now has shape {arrays[args.key].shape}"
    )
    if added:
        print(f"  zero-filled: {', '.join(added)}")
    if dropped:
        print(f"  dropped: {', '.join(dropped)}")
    print(f"wrote {dst_path}")
    return 0
