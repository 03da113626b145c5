"""The Adam training loop shared by the priors trained by gradient descent (``PosePrior._fit``)."""

from __future__ import annotations

import copy
import logging
import math

import torch
from torch import Tensor

from .base import PosePrior

log = logging.getLogger("poseprior")


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
    ``patience`` epochs without improvement and the best parameters are restored. Shuffling uses
    ``generator``. Returns the per-epoch history (``train_loss``, ``val_loss``).
    """
    params = [p for p in prior.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay) if params else None
    if opt is None:
        return []
    n = x.shape[0]
    steps = max(1, math.ceil(n / batch_size)) * epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    history: list[dict[str, float]] = []
    best, best_state, bad = math.inf, None, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"fit {prior.name}", unit="epoch", leave=False)
    for epoch in range(epochs):
        prior.train()
        perm = torch.randperm(n, generator=generator).to(x.device)
        total = 0.0
        for i in range(0, n, batch_size):
            batch = x[perm[i : i + batch_size]]
            loss = prior._training_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * batch.shape[0]
        record = {"epoch": epoch, "train_loss": total / n}
        prior.eval()
        if val is not None:
            with torch.no_grad():
                v = float(torch.cat([prior._training_loss(val[i : i + 4096]).reshape(1) * len(val[i : i + 4096])
                                     for i in range(0, len(val), 4096)]).sum() / len(val))
            record["val_loss"] = v
            if v < best - 1e-4:
                best, bad = v, 0
                best_state = copy.deepcopy(prior.state_dict())
            else:
                bad += 1
        history.append(record)
        log.info("fit %s epoch %d: %s", prior.name, epoch, record)
        if bar is not None:
            bar.set_postfix({k: round(v, 3) for k, v in record.items() if k != "epoch"})
            bar.update()
        if val is not None and bad >= patience:
            break
    if bar is not None:
        bar.close()
    if best_state is not None:
        prior.load_state_dict(best_state)
    prior.eval()
    prior.fit_history_ = history
    return history
