"""How a prior's density runs: in its own dtype under autocast, and compiled or eager.

:class:`~poseprior.PosePrior` takes :class:`Compilable` as a base and runs its public density
methods inside :func:`full_precision`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor


def full_precision(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Turns autocast off on ``device`` for the block, so densities, log-determinants and the broad
    mixture stay in the prior's dtype under mixed precision: with bf16 conditioner outputs a flow's
    log-density moved by up to a nat per pose (``benchmarks/training_options.py``)."""
    if torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class Compilable:
    """``compile()`` for priors: ``torch.compile`` of the class's ``_full_log_prob``, ``_training_loss``."""

    _compile_options: dict[str, Any] | None = None
    _compiled_hooks: tuple[Any, Any] | None = None

    def compile(self, *, enabled: bool = True, **options: Any) -> Any:
        r"""Opts in to ``torch.compile`` for the density (``log_prob``, ``penalty``) and ``training_loss``.

        The compiled functions are the class's and take the prior as an argument, so a
        ``copy.deepcopy`` of a compiled prior computes with its own weights. Sampling stays eager.
        ``options`` go to :func:`torch.compile`; ``enabled=False`` goes back to eager. Returns
        ``self``. No global state changes; the first call of each new batch size, dtype or grad
        mode compiles. Unlike ``nn.Module.compile`` it does not compile ``forward``, which priors do
        not use. Priors with a faster compiled path override this.
        """
        cls = type(self)
        self._compile_options = dict(options) if enabled else None
        hooks = (torch.compile(cls._full_log_prob, **options), torch.compile(cls._training_loss, **options))
        self._compiled_hooks = hooks if enabled else None
        return self

    def _run_full_log_prob(self, x: Tensor) -> Tensor:
        hooks = self._compiled_hooks
        return self._full_log_prob(x) if hooks is None else hooks[0](self, x)  # type: ignore[attr-defined]

    def _run_training_loss(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        hooks = self._compiled_hooks
        return self._training_loss(x, generator) if hooks is None else hooks[1](self, x, generator)  # type: ignore[attr-defined]
