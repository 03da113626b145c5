"""Checkpoints: ``config.json`` + ``model.safetensors``, loaded strictly, never unpickled.

:func:`load_checkpoint` reads a local folder. :func:`from_pretrained` also accepts a Hugging Face
hub repo id (downloaded with ``huggingface_hub``, imported lazily) and :func:`push_to_hub` uploads
a folder in the same layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import CheckpointError, UnknownPriorError

if TYPE_CHECKING:
    from .base import PosePrior


def _read_config(directory: Path) -> dict:
    from .base import CHECKPOINT_FORMAT, CONFIG_NAME, WEIGHTS_NAME

    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {str(directory)!r} does not exist or is not a folder")
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (cfg_path, w_path):
        if not path.is_file():
            raise CheckpointError(
                f"{str(directory)!r} is not a poseprior checkpoint: {path.name} is missing "
                f"(a checkpoint is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}, written by prior.save())"
            )
    try:
        meta = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{str(cfg_path)!r} is not valid JSON ({e}); the checkpoint is corrupt") from None
    if not isinstance(meta, dict) or not {"prior", "config", "format"} <= meta.keys():
        raise CheckpointError(
            f"{str(cfg_path)!r} is not a poseprior config: expected the keys 'prior', 'format' and "
            f"'config', got {sorted(meta) if isinstance(meta, dict) else type(meta).__name__}"
        )
    if meta["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(cfg_path)!r} has checkpoint format {meta['format']!r}; this poseprior reads format "
            f"{CHECKPOINT_FORMAT}. Upgrade poseprior or re-export the checkpoint"
        )
    return meta


def build_prior(
    meta: dict,
    state: dict[str, torch.Tensor],
    source: str,
    *,
    expected: type[PosePrior] | None = None,
    map_location: str | torch.device = "cpu",
) -> PosePrior:
    """Builds the prior a checkpoint record names (``meta``: prior, prior_version, config) and loads
    ``state`` into it strictly, in the saved precision; errors name ``source``."""
    from .registry import prior_class

    try:
        cls = prior_class(meta["prior"])
    except UnknownPriorError as e:
        raise CheckpointError(f"{source!r}: {e}") from None
    if expected is not None and cls is not expected:
        raise CheckpointError(
            f"{source!r} holds a {meta['prior']!r} prior, not a {expected.name!r} prior; "
            f"load it with poseprior.load() or {cls.__name__}.load()"
        )
    version = meta.get("prior_version", 1)
    config = meta["config"]
    if not isinstance(version, int) or version > cls.version or version < 1:
        raise CheckpointError(
            f"{source!r} holds a {meta['prior']!r} prior of version {version!r}; "
            f"this poseprior implements versions 1 to {cls.version}: upgrade poseprior"
        )
    if version < cls.version:  # an older parameterization: mapped onto today's (same density)
        if not isinstance(config, dict):
            raise CheckpointError(f"{source!r}: the config is not a JSON object")
        config, state = cls.upgrade_checkpoint(version, config, state)
    try:
        prior = cls(**config)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{source!r}: the config does not build a {cls.__name__}: {e}") from None
    own = prior.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source!r}: the weights do not match a {cls.__name__} built from its config "
            f"(missing: {missing[:5]}, unexpected: {unexpected[:5]}, wrong shape: {wrong[:5]})"
        )
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(dtypes) == 1:  # keep the precision the prior was saved in
        prior = prior.to(dtypes.pop())
    prior.load_state_dict(state, strict=True)
    return prior.to(map_location).eval()


def load_checkpoint(
    directory: str | Path,
    *,
    expected: type[PosePrior] | None = None,
    map_location: str | torch.device = "cpu",
) -> PosePrior:
    """Builds the prior named in ``config.json`` and loads ``model.safetensors`` strictly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .base import WEIGHTS_NAME

    directory = Path(directory)
    meta = _read_config(directory)
    try:
        state = load_file(str(directory / WEIGHTS_NAME), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{str(directory / WEIGHTS_NAME)!r} is not a readable safetensors file ({e}); "
            "the checkpoint is corrupt or truncated"
        ) from None
    return build_prior(meta, state, str(directory), expected=expected, map_location=map_location)


# ---------------------------------------------------------------------------- pretrained + hub
def _pretrained_roots() -> list[Path]:
    """Where pretrained folders live: ``poseprior/checkpoints`` when installed, ``checkpoints/`` in a checkout."""
    here = Path(__file__).resolve().parent
    return [p for p in (here / "checkpoints", here.parent / "checkpoints") if p.is_dir()]


def _pretrained_folders() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in _pretrained_roots():
        for d in sorted(root.iterdir()):
            if d.is_dir() and "." in d.name and (d / "config.json").is_file():
                found.setdefault(d.name, d)
    return found


def list_pretrained(pattern: str = "*") -> list[str]:
    """Names (``arch.tag``, e.g. ``"global_flow.cmu"``) of the pretrained checkpoints shipped with poseprior."""
    import fnmatch

    return sorted(n for n in _pretrained_folders() if fnmatch.fnmatch(n, pattern))


def load_pretrained(name: str, *, map_location: str | torch.device = "cpu") -> PosePrior:
    """Loads a shipped pretrained checkpoint by name (see :func:`list_pretrained`)."""
    import difflib

    folders = _pretrained_folders()
    if name not in folders:
        close = difflib.get_close_matches(name, folders, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownPriorError(
            f"no pretrained checkpoint {name!r}; available: {', '.join(sorted(folders)) or 'none'}.{hint}"
        )
    return load_checkpoint(folders[name], map_location=map_location)


def from_pretrained(
    repo_id_or_dir: str | Path,
    *,
    revision: str | None = None,
    expected: type[PosePrior] | None = None,
    map_location: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
) -> PosePrior:
    """Loads a checkpoint from a local folder, or from a Hugging Face hub repo at ``revision``.

    Only ``config.json`` and ``model.safetensors`` are downloaded; nothing is unpickled or executed.
    A pinned ``revision`` (a commit hash) makes the result reproducible.
    """
    path = Path(repo_id_or_dir)
    if path.is_dir():
        return load_checkpoint(path, expected=expected, map_location=map_location)
    if path.exists() or str(repo_id_or_dir).startswith((".", "/")) or str(repo_id_or_dir).count("/") != 1:
        raise CheckpointError(
            f"{str(repo_id_or_dir)!r} is neither a checkpoint folder nor a hub repo id of the form 'owner/name'"
        )
    from huggingface_hub import snapshot_download

    from .base import CONFIG_NAME, WEIGHTS_NAME

    try:
        local = snapshot_download(
            str(repo_id_or_dir),
            revision=revision,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME],
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except Exception as e:  # noqa: BLE001  (offline, unknown repo, auth: all reported the same way)
        raise CheckpointError(
            f"could not fetch {str(repo_id_or_dir)!r} (revision {revision!r}) from the Hugging Face hub: "
            f"{type(e).__name__}: {e}"
        ) from e
    return load_checkpoint(local, expected=expected, map_location=map_location)


def push_to_hub(
    prior: PosePrior,
    repo_id: str,
    *,
    commit_message: str = "Upload poseprior checkpoint",
    private: bool = False,
    token: str | None = None,
    model_card: str | None = None,
) -> str:
    """Saves ``prior`` (config.json + model.safetensors, plus an optional README model card) to a hub repo.

    Returns the URL of the commit.
    """
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        prior.save(tmp)
        if model_card is not None:
            (Path(tmp) / "README.md").write_text(model_card)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
