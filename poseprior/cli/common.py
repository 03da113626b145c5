"""Helpers the ``poseprior`` commands share: data folders, checkpoints, prior arguments, sample files."""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import CheckpointError, DataError, PosePriorError, UnknownPriorError

if TYPE_CHECKING:
    from ..base import PosePrior


def _number(text: str, kind: type[int] | type[float], low: int, strict: bool) -> int | float:
    """``text`` as a finite ``kind`` above ``low`` (``strict``) or at least ``low``, for argparse."""
    expected = f"{'an integer' if kind is int else 'a finite number'} {'>' if strict else '>='} {low}"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value) or value < low or (strict and value == low):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (epochs, batch sizes, sample counts)."""
    return int(_number(text, int, 1, strict=False))


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return int(_number(text, int, 0, strict=False))


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rates, frame rates)."""
    return float(_number(text, float, 0, strict=True))


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return float(_number(text, float, 0, strict=False))


def ema_decay(text: str) -> float:
    """argparse type: an EMA decay in [0, 1) (0: no EMA)."""
    value = float(_number(text, float, 0, strict=False))
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"expected a decay in [0, 1) e.g. 0.999 (0: off), got {text!r}")
    return value


def data_folder(path: str | None) -> Path:
    """``--data``, or the bundled CMU sample when it is not given."""
    if path is None:
        from ..data import sample_path

        return sample_path()
    return Path(path)


def existing_folder(path: str | Path, what: str = "data folder") -> Path:
    """``path`` as a folder that exists, else a :class:`DataError` naming ``--data``."""
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"{what} {str(folder)!r} does not exist; check the path given to --data")
    if not folder.is_dir():
        raise DataError(
            f"{what} {str(folder)!r} is not a folder; --data takes a folder of npz files with a splits.json"
        )
    return folder


def check_writable(folder: str | Path, option: str) -> Path:
    """``folder`` (to be created or written into), checked before any work; nothing is created.

    Its nearest existing ancestor must be a folder this process can write into, else a one-line
    :class:`PosePriorError` naming ``option``.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise PosePriorError(
            f"{option} {str(folder)!r}: {str(probe)!r} is a file, not a folder; pass another path"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PosePriorError(
            f"{option} {str(folder)!r}: cannot write into {str(probe)!r} (no permission, or a read-only "
            "file system); pass a folder you can write to"
        )
    return folder


def parse_prior_args(items: Sequence[str] | None, prior: str) -> dict[str, Any]:
    """``["blocks=2", "transform=coupling"]`` -> ``{"blocks": 2, "transform": "coupling"}``.

    Values are parsed as JSON when they parse (numbers, booleans, lists), else kept as strings.
    Every key must be a constructor argument of ``prior`` (a registered name), and a value must
    have the type of that argument's default: a finite number for a float, an integer for an int,
    ``true``/``false`` for a bool, text for a string. The constructor checks the rest.
    """
    from ..registry import prior_class

    params = _constructor_params(prior_class(prior))
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise PosePriorError(
                f"--prior-args takes KEY=VALUE items (e.g. blocks=2 transform=coupling), got {item!r}"
            )
        if key not in params:
            near = difflib.get_close_matches(key, params, n=1)
            raise PosePriorError(
                f"--prior-args {item!r}: {prior} has no argument {key!r}"
                f"{f' (did you mean {near[0]!r}?)' if near else ''}; it takes {', '.join(params)}"
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        expected = _expected_type(params[key], value)
        if expected is not None:
            raise PosePriorError(
                f"--prior-args {item!r}: {key} of {prior} takes {expected} (default {params[key]!r}), "
                f"got {text!r}"
            )
        out[key] = value
    return out


def _constructor_params(cls: type) -> dict[str, Any]:
    """The keyword arguments of ``cls``'s constructor and their defaults."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    sig = inspect.signature(cls.__init__)
    return {n: p.default for n, p in sig.parameters.items() if n != "self" and p.kind in kinds}


def _expected_type(default: Any, value: Any) -> str | None:
    """What an argument with ``default`` takes, if ``value`` is not that; ``None`` if it is."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if number and isinstance(value, int) else "an integer"
    if isinstance(default, float):
        return None if number and math.isfinite(value) else "a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "text"
    return None  # no default to go by (e.g. constant_dims=None): the constructor checks it


def import_training() -> Any:
    """``poseprior.training``, or a one-line error saying what to install."""
    try:
        from .. import training
    except ImportError as e:
        raise PosePriorError(str(e)) from None
    return training


def load_prior(spec: str) -> PosePrior:
    """A prior from a save() folder, a training run folder, a Lightning .ckpt or a pretrained name."""
    from .. import list_pretrained, list_priors, load, load_pretrained

    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").exists():
            for sub in ("best", "final"):  # a run folder checkpoints/<run>/ written by `poseprior train`
                if (path / sub / "config.json").is_file():
                    print(f"{spec}: a training run folder; using its {sub}/ export", file=sys.stderr)
                    return load(path / sub)
        return load(path)
    if path.is_file():
        if path.suffix != ".ckpt":
            raise CheckpointError(
                f"{spec!r} is a file but not a Lightning .ckpt; a checkpoint is a folder with config.json "
                "and "
                "model.safetensors (prior.save) or a .ckpt written by poseprior train"
            )
        return import_training().prior_from_checkpoint(path)
    if path.exists() or os.sep in spec or spec.startswith(".") or spec.endswith(".ckpt"):
        raise CheckpointError(f"checkpoint {spec!r} does not exist; check the path")
    # A name: "arch.tag" of a shipped pretrained checkpoint, or a prior with exactly one of them.
    # This is the hook for a pretrained registry: it goes through poseprior.load_pretrained.
    if spec in list_priors():
        names = list_pretrained(f"{spec}.*")
        if len(names) != 1:
            raise CheckpointError(
                f"prior {spec!r} has {'no' if not names else len(names)} pretrained checkpoint(s)"
                f"{': ' + ', '.join(names) + ' (pass one of these names)' if names else ''}; "
                f"train one with: poseprior train {spec} --data DIR, then pass checkpoints/<run>/best"
            )
        spec = names[0]
    try:
        return load_pretrained(spec)
    except UnknownPriorError as e:
        raise CheckpointError(
            f"{spec!r} is neither a checkpoint folder, a .ckpt file nor a pretrained checkpoint name ({e})"
        ) from None


def write_samples(path: Path, samples: torch.Tensor, layout: str) -> Path:
    """Writes samples as an AMASS-style SMPL-H npz (root, missing joints and hands zero) + the raw array.

    Returns the path written (``.npz`` appended if ``path`` lacks it).
    """
    from ..amass import save_npz

    note = "samples of a poseprior prior; poses: SMPL-H layout with the root and unmodelled joints zero"
    extra = {"samples": samples.numpy(), "layout": np.str_(layout), "note": np.str_(note)}
    return save_npz(path, samples, layout, extra=extra)
