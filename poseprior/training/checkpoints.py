r"""Lightning ``.ckpt`` files of a :class:`~poseprior.training.PriorModule`: reading, export, callbacks.

A ``.ckpt`` is training state (a zip of tensors and plain containers, read with
``weights_only=True``: nothing in it is executed). Besides Lightning's own entries it holds

- ``checkpoint["poseprior"]``: the prior's :func:`~poseprior.hub.checkpoint_record` (name,
  version, ``get_config()`` at save time), so :func:`prior_from_checkpoint` can rebuild the
  prior, validated like a checkpoint folder;
- ``checkpoint["poseprior_run"]``: the options that decide the optimization (``lr``, ``batch_size``,
  ``seed``, ...), the completed epochs and a hash of the data, so that ``--resume`` can refuse to
  continue a run with other options (see :func:`poseprior.training.train`).

**Files of a run folder** ``checkpoints/<run>/`` (epochs counted from 1): ``last.ckpt`` after every
completed epoch, ``best-epochNNN.ckpt`` the epoch with the lowest validation NLL (kept separately),
``epochNNN.ckpt`` every ``save_every`` epochs (all kept, to start later stages from), and the
exports ``final/`` and ``best/`` (``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from ..base import PosePrior
from ..errors import CheckpointError
from ..hub import MAX_PARAMETERS, build_prior, checkpoint_record

__all__ = [
    "CHECKPOINT_KEY",
    "RUN_KEY",
    "checkpoint_config",
    "checkpoint_run",
    "export_checkpoint",
    "load_source",
    "prior_from_checkpoint",
]

CHECKPOINT_KEY = "poseprior"
"""Key of a Lightning checkpoint holding the prior's name, version and config."""
RESUME_OPTIONS = ("lr", "weight_decay", "lr_schedule", "batch_size", "seed", "grad_clip", "ema", "precision")
"""Options a resumed run must keep (they decide the optimization); see :func:`poseprior.training.train`."""
RUN_KEY = "poseprior_run"
"""Key of a Lightning checkpoint holding the run's optimization options and completed epochs."""
EMA_PREFIX = "ema.module."
"""State-dict prefix of the EMA weights in a checkpoint of a run trained with ``ema``."""


def read_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """The content of a poseprior ``.ckpt``, read without executing anything (else CheckpointError)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Lightning checkpoint {str(path)!r} does not exist or is not a file")
    try:
        # weights_only: a checkpoint holds tensors and plain containers only, nothing to execute.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (truncated zip, not a torch file, unsafe pickle: all unreadable)
        raise CheckpointError(
            f"{str(path)!r} is not a readable Lightning checkpoint ({type(e).__name__}: {str(e)[:200]}); "
            "it is corrupt, truncated or not a .ckpt written by poseprior train"
        ) from None
    if not isinstance(ckpt, dict) or CHECKPOINT_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not a poseprior training checkpoint (no "
            f"{CHECKPOINT_KEY!r} entry); it was not written by poseprior.training"
        )
    return ckpt


def checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The :func:`~poseprior.hub.checkpoint_record` of a Lightning checkpoint (prior, format, config, ...)."""
    return dict(read_lightning_checkpoint(path)[CHECKPOINT_KEY])


def checkpoint_run(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The run entry of a read checkpoint: ``options`` and ``epochs_done`` (from Lightning's own
    entries for checkpoints written before the entry existed)."""
    run = dict(ckpt.get(RUN_KEY) or {})
    if "epochs_done" not in run:
        run["epochs_done"] = int(ckpt.get("epoch", -1)) + 1
    if "options" not in run:  # an older checkpoint: what its hyperparameters say
        hp, dm = dict(ckpt.get("hyper_parameters") or {}), dict(ckpt.get("datamodule_hyper_parameters") or {})
        run["options"] = {k: hp[k] for k in ("lr", "weight_decay", "lr_schedule", "seed") if k in hp}
        if "batch_size" in dm:
            run["options"]["batch_size"] = dm["batch_size"]
    return run


def stopped_early(ckpt: dict[str, Any]) -> bool:
    """True if the run of a read checkpoint was stopped by early stopping (``patience``)."""
    states = ckpt.get("callbacks") or {}
    return any(
        str(k).startswith("EarlyStopping") and int(v.get("stopped_epoch", 0) or 0) > 0
        for k, v in states.items()
        if isinstance(v, dict)
    )


def prior_from_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    max_parameters: int | None = MAX_PARAMETERS,
    ema: bool | None = None,
) -> PosePrior:
    r"""Rebuilds the trained :class:`~poseprior.PosePrior` from a Lightning ``.ckpt`` of :class:`PriorModule`.

    The prior is built from the record in the checkpoint, validated like a checkpoint folder
    (``max_parameters``: see :func:`poseprior.hub.load_checkpoint`), and its weights are loaded
    strictly, in eval mode. Use :func:`export_checkpoint` to turn it into a shareable folder.

    Arguments:
        ema: For a run trained with ``ema``: ``True`` (or ``None``, the default) loads the EMA
            weights, the ones validated and exported; ``False`` the raw optimizer weights.
    """
    ckpt = read_lightning_checkpoint(path)
    weights = ckpt["state_dict"]
    has_ema = any(k.startswith(EMA_PREFIX) for k in weights)
    if ema and not has_ema:
        raise CheckpointError(f"{str(path)!r} holds no EMA weights: its run was trained without ema")
    prefix = EMA_PREFIX if has_ema and ema is not False else "prior."
    state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    record = ckpt[CHECKPOINT_KEY]
    return build_prior(record, state, str(path), map_location=map_location, max_parameters=max_parameters)


def export_checkpoint(path: str | Path, directory: str | Path, *, model_card: str | None = None) -> Path:
    """Writes the prior of a Lightning ``.ckpt`` to ``directory`` with the atomic ``prior.save``:
    ``config.json`` + ``model.safetensors`` (+ ``README.md`` if ``model_card`` is given)."""
    return prior_from_checkpoint(path).save(directory, model_card=model_card)


def load_source(path: str | Path) -> PosePrior:
    """The prior of a Lightning ``.ckpt`` (its EMA weights if it has them) or of an exported folder."""
    from ..hub import load_checkpoint

    path = Path(path)
    if path.is_dir():
        return load_checkpoint(path)
    if path.is_file():
        return prior_from_checkpoint(path)
    raise CheckpointError(
        f"{str(path)!r} does not exist; --init-from takes a .ckpt of a run (e.g. checkpoints/<run>/last.ckpt "
        "or epochNNN.ckpt) or an exported folder (config.json + model.safetensors)"
    )


def check_resume(
    ckpt: dict[str, Any], path: Path, prior: PosePrior, options: dict[str, Any]
) -> dict[str, Any]:
    """Refuses to resume ``ckpt`` with another prior configuration, other data or other options."""
    diff = config_differences(prior, ckpt["poseprior"])
    if diff:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: it was trained with a different prior configuration (differs "
            f"in: {'; '.join(diff)}); resume with the same prior arguments and data, or start a new run"
        )
    run = checkpoint_run(ckpt)
    theirs = run["options"]
    keys = [*RESUME_OPTIONS, "data_sha256"] + (
        ["max_epochs"] if options.get("lr_schedule") == "cosine" else []
    )
    changed = [k for k in keys if k in theirs and theirs[k] != options.get(k)]
    if changed:
        what = ", ".join(
            f"{k} {_shown(theirs[k])} -> {_shown(options.get(k))}"
            if k != "data_sha256"
            else "the training data"
            for k in changed
        )
        raise CheckpointError(
            f"--resume continues a run exactly, but these differ from the run in {str(path)!r}: {what}. To "
            f"train on from its weights with other options, start a new run with --init-from {path} "
            "(init_from=...)"
        )
    return run


def _shown(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else repr(value)


def load_init_from(prior: PosePrior, source: str | Path) -> None:
    """Loads the weights of ``source`` (a .ckpt or an exported folder) into ``prior``; configs must match."""
    theirs = load_source(source)
    diff = config_differences(prior, checkpoint_record(theirs))
    if diff:
        raise CheckpointError(
            f"cannot start from {str(source)!r}: its prior configuration differs from this run's "
            f"(differs in: {'; '.join(diff)}); pass the same prior arguments (--prior-args) and data"
        )
    prior.load_state_dict(theirs.to(prior.data_mean).state_dict(), strict=True)


def config_differences(ours: PosePrior, theirs: dict[str, Any]) -> list[str]:
    """``"field (theirs X, ours Y)"`` for every field where a checkpoint record differs from ``ours``."""
    mine = checkpoint_record(ours)
    out = (
        []
        if theirs.get("prior") == mine["prior"]
        else [f"prior ({theirs.get('prior')!r}, not {mine['prior']!r})"]
    )
    a, b = theirs.get("config") or {}, mine["config"]
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f"{key} ({_short(a.get(key))} there, {_short(b.get(key))} here)")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------- callbacks
class _RunCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint whose file names count epochs from 1 and whose state has a fixed key."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        super().__init__(auto_insert_metric_name=False, enable_version_counter=False, **kwargs)
        self._kind = kind

    @property
    def state_key(self) -> str:
        return f"ModelCheckpoint[poseprior:{self._kind}]"

    def _monitor_candidates(self, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
        candidates = super()._monitor_candidates(trainer)
        candidates["epoch"] = torch.tensor(trainer.current_epoch + 1)  # epochNNN = after NNN epochs
        return candidates


def checkpoint_callbacks(dirpath: Path, save_every: int | None) -> list[ModelCheckpoint]:
    """``best-epochNNN.ckpt`` (lowest ``val/nll``), ``epochNNN.ckpt`` every ``save_every`` epochs, and
    ``last.ckpt`` after every epoch, written in that order (``last.ckpt`` then records the others)."""
    cbs: list[ModelCheckpoint] = [
        _RunCheckpoint(
            "best",
            dirpath=dirpath,
            filename="best-epoch{epoch:03d}",
            monitor="val/nll",
            mode="min",
            save_top_k=1,
        ),
    ]
    if save_every:
        cbs.append(
            _RunCheckpoint(
                "every",
                dirpath=dirpath,
                filename="epoch{epoch:03d}",
                save_top_k=-1,
                every_n_epochs=int(save_every),
            )
        )
    cbs.append(_RunCheckpoint("last", dirpath=dirpath, filename="last", save_top_k=1, every_n_epochs=1))
    return cbs
