"""The one rule for random draws: on the generator's device, then moved to the prior's.

Every prior draws its random numbers through these functions. A draw is made on the device of
the ``generator`` it is given (the default generator of the prior's device when there is none)
and then moved to ``like``'s device, so a CPU generator drives a CUDA prior, and the same seeded
CPU generator gives the same poses whichever device the prior is on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _device(generator: torch.Generator | None, like: Tensor) -> torch.device:
    return like.device if generator is None else generator.device


def randn(shape: Sequence[int], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal draws with ``like``'s dtype, on ``like``'s device (see the module docs)."""
    out = torch.randn(tuple(shape), generator=generator, dtype=like.dtype, device=_device(generator, like))
    return out.to(like.device)


def rand(shape: Sequence[int], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform draws in :math:`[0, 1)` with ``like``'s dtype, on ``like``'s device."""
    out = torch.rand(tuple(shape), generator=generator, dtype=like.dtype, device=_device(generator, like))
    return out.to(like.device)


def randint(
    high: int, shape: Sequence[int], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Uniform integers in :math:`[0, high)` (int64), drawn on the generator's device, moved to ``device``."""
    where = device if generator is None else generator.device
    return torch.randint(high, tuple(shape), generator=generator, device=where).to(device)
