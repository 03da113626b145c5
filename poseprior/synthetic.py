r"""SYNTHETIC hand poses for tests, examples and smoke benchmarks. **Not real motion data.**

No finger-motion data with a usable licence ships with poseprior; users train the hand prior on
their own AMASS- or MANO-format data. This module generates a clearly artificial stand-in with a
few of the *qualitative* features of real hands, so that a hand prior has something non-trivial to
learn:

* a global **grasp** (curl) synergy shared by the fingers, with per-finger individuation, the ring
  and pinky fingers coupled more tightly than the others;
* per-finger flexion of the three joints driven non-linearly by that finger's curl, the distal
  joint coupled to the middle one (``DIP ~ 0.7 PIP``);
* a **spread** (abduction) synergy of the knuckles that fades as the fingers curl;
* a thumb **opposition** synergy;
* independent Gaussian noise on every value (so no value is constant).

The axes follow the SMPL-X left hand only roughly (fingers along :math:`+x`, palm facing
:math:`-y`: flexion about :math:`-z`, spread about :math:`y`, twist about :math:`x`); the angles are
plausible ranges, not measurements. Numbers obtained on this set (NLL, reconstruction error) say
nothing about real hands.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .formats.adapters import mirror_hand

__all__ = ["synthetic_hand_poses"]

# Order of the fingers in the MANO / SMPL-X hand layout (3 joints each).
_INDEX, _MIDDLE, _PINKY, _RING, _THUMB = range(5)
# Knuckle abduction per unit of spread, in layout finger order (index, middle, pinky, ring).
_SPREAD = (1.0, 0.15, -1.1, -0.55)


def _unit(v: tuple[float, float, float], dtype: torch.dtype) -> Tensor:
    t = torch.tensor(v, dtype=dtype)
    return t / t.norm()


def synthetic_hand_poses(
    n: int,
    *,
    generator: torch.Generator | None = None,
    side: Literal["left", "right"] = "left",
    noise: float = 0.03,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Generates SYNTHETIC flat-relative axis-angle hand poses (see the module docs; not real data).

    Arguments:
        n: The number of poses.
        generator: The random generator; every random draw uses it (the global RNG is used only
            when it is ``None``).
        side: ``"left"`` (the hand the synergies are written for) or ``"right"`` (the left-hand
            poses mirrored with :func:`~poseprior.formats.adapters.mirror_hand`).
        noise: Standard deviation (radians) of the independent noise added to every value.
        dtype: The floating dtype of the result.

    Returns:
        Axis-angle poses of one hand in the MANO joint order, with shape :math:`(n, 15, 3)`,
        relative to the flat hand.

    Example:
        >>> x = synthetic_hand_poses(4, generator=torch.Generator().manual_seed(0))
        >>> x.shape
        torch.Size([4, 15, 3])
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"synthetic_hand_poses: n must be a non-negative int, got {n!r}")
    if side not in ("left", "right"):
        raise ValueError(f"synthetic_hand_poses: side must be 'left' or 'right', got {side!r}")
    if noise < 0:
        raise ValueError(f"synthetic_hand_poses: noise must be >= 0, got {noise}")

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    # Synergies: a grasp level shared by the hand, individuation per finger (ring and pinky share
    # part of theirs), a spread level and a thumb opposition level.
    grasp = 1.5 * randn(n, 1)
    own = randn(n, 5)
    own[:, _RING] = 0.7 * own[:, _PINKY] + 0.71 * own[:, _RING]
    curl = torch.sigmoid(grasp + 0.8 * own)  # (n, 5) in (0, 1)
    spread = 0.25 * randn(n, 1)
    oppose = torch.sigmoid(randn(n) + 0.5 * grasp[:, 0])

    flex_axis = _unit((0.0, 0.0, -1.0), dtype)
    spread_axis = _unit((0.0, 1.0, 0.0), dtype)
    twist_axis = _unit((1.0, 0.0, 0.0), dtype)
    x = torch.zeros(n, 5, 3, 3, dtype=dtype)  # (pose, finger, joint, xyz)

    # Fingers: knuckle (MCP), middle (PIP) and distal (DIP) flexion as non-linear functions of curl.
    c = curl[:, :4]
    mcp = 1.3 * c.pow(1.5)
    pip = 1.6 * torch.sin(0.5 * torch.pi * c)
    dip = 0.7 * pip
    for j, angle in enumerate((mcp, pip, dip)):
        x[:, :4, j] += angle.unsqueeze(-1) * flex_axis
    abduction = spread * torch.tensor(_SPREAD, dtype=dtype) * (1.0 - c)
    x[:, :4, 0] += abduction.unsqueeze(-1) * spread_axis
    x[:, _PINKY, 0] += (0.25 * c[:, _PINKY]).unsqueeze(-1) * twist_axis  # the pinky rolls as it curls

    # Thumb: opposition swings the base across the palm; its curl bends the two distal joints.
    ct = curl[:, _THUMB]
    x[:, _THUMB, 0] += (0.9 * oppose).unsqueeze(-1) * _unit((0.6, 0.3, -0.75), dtype)
    x[:, _THUMB, 1] += (0.7 * ct).unsqueeze(-1) * _unit((0.4, -0.5, -0.75), dtype)
    x[:, _THUMB, 2] += (0.9 * ct * oppose).unsqueeze(-1) * _unit((0.4, -0.5, -0.75), dtype)

    x = x.reshape(n, 15, 3) + noise * randn(n, 15, 3)
    if side == "right":
        x = mirror_hand(x)
    return x
