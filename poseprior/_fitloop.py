"""The Adam training loop shared by the priors trained by gradient descent (``PosePrior._fit``)."""

from __future__ import annotations

import copy
import logging
import math

import torch
from torch import Tensor

from .base import PosePrior
from .errors import FitDivergedError

log = logging.getLogger("poseprior")


def _check_options(
    epochs: object, batch_size: object, lr: object, weight_decay: object, patience: object
) -> None:
    def count(name: str, v: object) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"fit: {name} must be an int >= 1, got {v!r}")

    def number(name: str, v: object, positive: bool) -> None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (v <= 0 if positive else v < 0):
            raise ValueError(
                f"fit: {name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}"
            )

    count("epochs", epochs)
    count("batch_size", batch_size)
    count("patience", patience)
    number("lr", lr, True)
    number("weight_decay", weight_decay, False)


def fit_adam(
    prior: PosePrior,
    x: Tensor,
    *,
    val: Tensor | None = None,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int = 5,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:
    r"""Minimizes ``prior._training_loss`` with Adam over minibatches of ``x`` (shape :math:`(N, J, 3)`).

    With ``val`` poses, the validation loss is computed after every epoch; training stops after
    ``patience`` epochs without improvement and the best parameters are restored. Shuffling and
    the prior's training noise use ``generator``. Returns the per-epoch history (``train_loss``,
    ``val_loss``).

    Raises:
        FitDivergedError: if a training loss is not finite. The parameters of the end of the last
            complete epoch (or the initial ones) are restored first.
    """
    _check_options(epochs, batch_size, lr, weight_decay, patience)
    params = [p for p in prior.parameters() if p.requires_grad]
    if not params:
        return []
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, math.ceil(len(x) / batch_size)) * epochs
    )
    history: list[dict[str, float]] = []
    best, best_state, bad = math.inf, None, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"fit {prior.name}", unit="epoch", leave=False)
    try:
        for epoch in range(epochs):
            record = {
                "epoch": epoch,
                "train_loss": _epoch(prior, x, opt, sched, batch_size, generator, epoch),
            }
            prior.eval()
            if val is not None:
                record["val_loss"] = v = _validation_loss(prior, val)
                if v < best - 1e-4:
                    best, bad, best_state = v, 0, copy.deepcopy(prior.state_dict())
                else:
                    bad += 1
            history.append(record)
            log.info("fit %s epoch %d: %s", prior.name, epoch, record)
            if bar is not None:
                bar.set_postfix({k: round(v, 3) for k, v in record.items() if k != "epoch"})
                bar.update()
            if val is not None and bad >= patience:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        prior.load_state_dict(best_state)
    prior.eval()
    prior.fit_history_ = history
    return history


def _epoch(
    prior: PosePrior,
    x: Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    batch_size: int,
    generator: torch.Generator | None,
    epoch: int,
) -> float:
    """One pass over shuffled minibatches of ``x``; the mean training loss. Restores the weights of
    the epoch's start and raises :class:`FitDivergedError` on a non-finite loss."""
    good = copy.deepcopy(prior.state_dict())  # the weights to go back to if training diverges
    params = [p for group in opt.param_groups for p in group["params"]]
    prior.train()
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator).to(x.device)
    total = 0.0
    for step, i in enumerate(range(0, n, batch_size)):
        batch = x[perm[i : i + batch_size]]
        loss = prior._training_loss(batch, generator)
        if not bool(torch.isfinite(loss)):
            prior.load_state_dict(good)
            prior.eval()
            kept = f"the weights of the end of epoch {epoch - 1}" if epoch else "the initial weights"
            raise FitDivergedError(
                f"{type(prior).__name__}.fit diverged: the training loss is {float(loss.detach())} at "
                f"epoch {epoch}, step {step} (learning rate {sched.get_last_lr()[0]:.3g}). The data was "
                "checked finite, so the optimization is unstable: lower lr (e.g. by 10x) or raise "
                f"batch_size. {kept[0].upper()}{kept[1:]} are restored."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        sched.step()
        total += float(loss.detach()) * batch.shape[0]
    return total / n


@torch.no_grad()
def _validation_loss(prior: PosePrior, val: Tensor, chunk: int = 4096) -> float:
    """The mean eval-mode training loss over ``val``, in chunks."""
    total = sum(float(prior._training_loss(c, None)) * len(c) for c in val.split(chunk))
    return total / len(val)
