"""Checkpoints: a folder of ``config.json`` + ``model.safetensors`` (+ an optional ``README.md`` model card).

Everything that reads or writes one is here: the format constants, :func:`checkpoint_record` (also
stored in Lightning ``.ckpt`` files by :mod:`poseprior.training`), :func:`save_checkpoint` behind
``PosePrior.save``, :func:`load_checkpoint` behind ``poseprior.load`` and ``PosePrior.load``, and
the pretrained and Hugging Face hub helpers (``huggingface_hub`` is imported lazily). Nothing is
ever unpickled.

**Format 2.** ``config.json`` holds the record ``{"prior", "prior_version", "format",
"poseprior_version", "config"}`` and the safetensors metadata holds the same record (key
``"poseprior"``): it binds the weights to their config, so a folder mixing the config of one save
with the weights of another (or an edited ``config.json``) is refused. Format 1 (poseprior 0.1.0,
the first shipped checkpoints) had no such binding: it still loads, but a mix cannot be detected.

**Atomic saves.** :func:`save_checkpoint` writes the files into a temporary sibling folder and
swaps it into place (:mod:`poseprior._atomicdir`): a process killed at any moment leaves the
previous checkpoint or the new one, never a mix, and the folder then holds exactly the new
checkpoint's files (no stale model card). A folder holding other files is refused, never deleted.
:func:`load_checkpoint` opens the folder once and reads both files through that handle, so a save
swapping the folder meanwhile gives it the old checkpoint or the new one.

**Validation before building.** A checkpoint may come from anyone. The config must name only
constructor parameters, with values of the annotated JSON types; the prior is then built while
every tensor factory call is sized on the meta device first, and the build is refused before the
tensors it creates exceed ``max_parameters`` values (an untrusted ``hidden_features: 20000`` is
refused without allocating it). The weights must have the names, shapes and dtype kinds (floating,
bool, integer) of the built prior, and finite values. Every failure is a :class:`CheckpointError`
naming the file and the field or tensor.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._ckptcheck import JSON_KINDS, check_weights, config_kwargs, construct
from .errors import CheckpointError, UnknownPriorError

if TYPE_CHECKING:
    from .base import PosePrior

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint format written; format 1 (no config-weights binding) is still read."""
READABLE_FORMATS = (1, 2)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
CHECKPOINT_FILES = (CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME)
"""Every file a checkpoint folder may hold."""
RECORD_KEY = "poseprior"
"""The safetensors metadata key holding the checkpoint record (format 2)."""
MAX_PARAMETERS = 50_000_000
"""Default cap on the tensor values a loaded checkpoint may create; ``max_parameters=None`` lifts it."""
_MAX_CONFIG_BYTES = 1 << 20
_READ_ATTEMPTS = 3


# ---------------------------------------------------------------------------- writing
def checkpoint_record(prior: PosePrior) -> dict[str, Any]:
    """What a checkpoint says about its prior: ``{"prior", "prior_version", "format",
    "poseprior_version", "config"}``.

    The record is ``config.json``, is bound into the weights' metadata, and is what Lightning
    ``.ckpt`` files store to rebuild the prior.
    """
    from . import __version__

    if not prior.name:
        raise CheckpointError(
            f"cannot write a checkpoint of {type(prior).__name__}: it is not registered, so no loader "
            "could rebuild it; decorate the class with @poseprior.register_prior(name)"
        )
    return {
        "prior": prior.name,
        "prior_version": type(prior).version,
        "format": CHECKPOINT_FORMAT,
        "poseprior_version": __version__,
        "config": prior.get_config(),
    }


def _record_json(record: dict[str, Any], **kwargs: Any) -> str:
    try:
        return json.dumps(record, allow_nan=False, **kwargs)
    except ValueError:
        bad = sorted(k for k, v in record["config"].items() if isinstance(v, float) and not math.isfinite(v))
        raise CheckpointError(
            f"cannot save a {record['prior']!r} prior: its config holds non-finite numbers ({bad}), which "
            "a checkpoint (JSON) cannot hold; build the prior with finite arguments"
        ) from None


def save_checkpoint(prior: PosePrior, directory: str | Path, *, model_card: str | None = None) -> Path:
    """Writes ``prior`` to the folder ``directory`` atomically and returns its path.

    The folder afterwards holds exactly ``config.json``, ``model.safetensors`` and, if
    ``model_card`` is given, ``README.md`` with that text. An existing checkpoint there is replaced
    only once the new one is complete; a folder holding anything else is refused.
    """
    from safetensors.torch import save

    from ._atomicdir import write_folder

    if model_card is not None and not isinstance(model_card, str):
        raise TypeError(
            f"model_card must be the text of README.md (a str) or None, got {type(model_card).__name__}"
        )
    record = checkpoint_record(prior)
    bound = {
        "prior": record["prior"],
        "format": str(CHECKPOINT_FORMAT),
        RECORD_KEY: _record_json(record, sort_keys=True),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in prior.state_dict().items()}
    files = {
        CONFIG_NAME: (_record_json(record, indent=2) + "\n").encode(),
        WEIGHTS_NAME: save(state, metadata=bound),
    }
    if model_card is not None:
        files[MODEL_CARD_NAME] = model_card.encode()
    write_folder(Path(directory), files, check=_check_replaceable)
    return Path(directory)


def _check_replaceable(folder: Path) -> None:
    """Refuses to replace anything but nothing, an empty folder, or a poseprior checkpoint folder."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CheckpointError(
            f"cannot save to {str(folder)!r}: it exists and is not a folder; choose another path"
        )
    names = sorted(os.listdir(folder))
    foreign = [n for n in names if n not in CHECKPOINT_FILES]
    if foreign:
        raise CheckpointError(
            f"cannot save to {str(folder)!r}: it holds {foreign[:5]}{' ...' if len(foreign) > 5 else ''}, "
            f"which are not checkpoint files ({', '.join(CHECKPOINT_FILES)}), and save() replaces the whole "
            "folder; save into a new or empty folder, or move those files away"
        )
    if names and not _is_record(folder / CONFIG_NAME):
        raise CheckpointError(
            f"cannot save to {str(folder)!r}: it holds {names} but no readable poseprior {CONFIG_NAME}, "
            "so it is not a checkpoint that save() may replace; save elsewhere, or delete it yourself"
        )


def _is_record(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(meta, dict) and {"prior", "format", "config"} <= meta.keys()


# ---------------------------------------------------------------------------- reading
def load_checkpoint(
    directory: str | Path,
    *,
    expected: type[PosePrior] | None = None,
    map_location: str | torch.device = "cpu",
    max_parameters: int | None = MAX_PARAMETERS,
) -> PosePrior:
    """Builds the prior named in ``config.json``, checks it, and loads ``model.safetensors`` strictly.

    ``max_parameters`` caps the tensor values the checkpoint may create (None: no cap, for
    checkpoints you trust). A folder replaced by a concurrent save while it is read is read again.
    """
    directory = Path(directory)
    for attempt in range(_READ_ATTEMPTS):
        ident = None
        try:
            ident, raw = _read_files(directory, max_parameters)
            cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
            meta = _parse_config(raw[CONFIG_NAME], cfg_path)
            state, metadata = _parse_weights(raw[WEIGHTS_NAME], w_path)
            return build_prior(
                meta,
                state,
                str(cfg_path),
                weights_source=str(w_path),
                weights_metadata=metadata,
                expected=expected,
                map_location=map_location,
                max_parameters=max_parameters,
            )
        except CheckpointError:
            if attempt + 1 == _READ_ATTEMPTS or _identity(directory) == ident:
                raise
    raise AssertionError("unreachable")


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _read_files(
    directory: Path, max_parameters: int | None
) -> tuple[tuple[int, int] | None, dict[str, bytes | None]]:
    """The bytes of config.json and model.safetensors (None if absent), read through one handle on the folder.

    Files are opened relative to that handle, so both come from the same folder even if a save
    swaps another one into its place meanwhile; also returns that folder's identity.
    """
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {str(directory)!r} does not exist or is not a folder")
    limits: dict[str, int | None] = {CONFIG_NAME: None, WEIGHTS_NAME: None}
    if max_parameters is not None:  # float64 values plus a header
        limits = {CONFIG_NAME: _MAX_CONFIG_BYTES, WEIGHTS_NAME: 8 * max_parameters + _MAX_CONFIG_BYTES}
    if os.open not in os.supports_dir_fd:  # Windows: by path
        ident = _identity(directory)
        return ident, {n: _read(directory / n, None, limit) for n, limit in limits.items()}
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:
        raise CheckpointError(f"could not open the checkpoint folder {str(directory)!r}: {e}") from None
    try:
        st = os.fstat(dir_fd)
        return (st.st_dev, st.st_ino), {n: _read(directory / n, dir_fd, limit) for n, limit in limits.items()}
    finally:
        os.close(dir_fd)


def _read(path: Path, dir_fd: int | None, limit: int | None) -> bytes | None:
    """The bytes of ``path`` (opened by name relative to ``dir_fd`` when given), None if it does not exist."""
    try:
        fd = os.open(path.name if dir_fd is not None else path, os.O_RDONLY, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CheckpointError(f"could not read {str(path)!r}: {e}") from None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > limit:
            raise CheckpointError(
                f"{str(path)!r} is {size:,} bytes, more than the {limit:,} bytes poseprior reads under the "
                f"max_parameters cap; if you trust this checkpoint, load it with max_parameters=None"
            )
        try:
            return f.read()
        except OSError as e:
            raise CheckpointError(f"could not read {str(path)!r}: {e}") from None


def _missing(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{str(path.parent)!r} is not a poseprior checkpoint: {path.name} is missing "
        f"(a checkpoint is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}, written by prior.save())"
    )


def _parse_config(raw: bytes | None, path: Path) -> dict[str, Any]:
    if raw is None:
        raise _missing(path)

    def refuse(constant: str) -> None:
        raise CheckpointError(
            f"{str(path)!r} holds {constant}, which is not a JSON number; a checkpoint's numbers are finite. "
            "The checkpoint is corrupt or was edited"
        )

    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({e}); the checkpoint is corrupt") from None
    return _check_record(meta, str(path))


def _parse_weights(raw: bytes | None, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a safetensors file and its metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if raw is None:
        raise _missing(path)
    try:
        state = load(raw)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{str(path)!r} is not a readable safetensors file ({e}); the checkpoint is corrupt or truncated"
        ) from None
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])  # valid: load() parsed it
    return state, header.get("__metadata__") or {}


def _check_record(meta: object, source: str) -> dict[str, Any]:
    if not isinstance(meta, dict) or not {"prior", "config", "format"} <= meta.keys():
        raise CheckpointError(
            f"{source!r} is not a poseprior config: expected the keys 'prior', 'format' and "
            f"'config', got {sorted(meta) if isinstance(meta, dict) else type(meta).__name__}"
        )
    if type(meta["format"]) is not int or meta["format"] not in READABLE_FORMATS:
        raise CheckpointError(
            f"{source!r} has checkpoint format {meta['format']!r}; this poseprior reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}. Upgrade poseprior or re-export the checkpoint"
        )
    for key, kind in (("prior", str), ("config", dict), ("prior_version", int)):
        if key in meta and type(meta[key]) is not kind:
            raise CheckpointError(
                f"{source!r}: field {key!r} must be a JSON {JSON_KINDS[kind]}, got {meta[key]!r}; "
                "the checkpoint is corrupt or was edited"
            )
    return meta


def _check_binding(
    meta: dict[str, Any], metadata: dict[str, str], config_source: str, weights_source: str
) -> None:
    """Refuses weights that were not saved together with this config (format 2 binds them)."""
    bound = metadata.get(RECORD_KEY)
    if bound is None and meta["format"] == 1 and metadata.get("format", "1") == "1":
        if metadata.get("prior", meta["prior"]) == meta["prior"]:
            return  # format 1 bound nothing but the prior's name
    try:
        record = json.loads(bound) if bound is not None else None
    except ValueError:
        record = None
    if record == meta:
        return
    if isinstance(record, dict):
        differ = sorted(
            k for k in record.keys() | meta.keys() if k != "config" and record.get(k) != meta.get(k)
        )
        old, new = record.get("config"), meta["config"]
        if isinstance(old, dict):
            differ += sorted(f"config.{k}" for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        what = f"they differ in {differ}"
    else:
        what = f"the weights carry no poseprior record (their metadata: {sorted(metadata)})"
    raise CheckpointError(
        f"{config_source!r} does not belong to {weights_source!r}: {what}. The folder mixes files of two "
        "saves, or config.json was edited; restore the checkpoint, or save the prior again with prior.save()"
    )


# ---------------------------------------------------------------------------- building
def build_prior(
    meta: dict,
    state: dict[str, torch.Tensor],
    source: str,
    *,
    weights_source: str | None = None,
    weights_metadata: dict[str, str] | None = None,
    expected: type[PosePrior] | None = None,
    map_location: str | torch.device = "cpu",
    max_parameters: int | None = MAX_PARAMETERS,
) -> PosePrior:
    """Builds the prior a checkpoint record names and loads ``state`` into it strictly, in its precision.

    ``meta`` is a :func:`checkpoint_record`; ``source`` and ``weights_source`` name where the record
    and the weights came from, for the errors. Given ``weights_metadata`` (a safetensors file's),
    the weights must be bound to ``meta``.
    """
    weights_source = weights_source or source
    meta = _check_record(meta, source)
    cls = _registered_class(meta, source, expected)
    config, state = _upgraded(cls, meta, state)
    prior = construct(cls, config_kwargs(cls, config, source), source, max_parameters)
    check_weights(prior, state, weights_source)
    if weights_metadata is not None:
        _check_binding(meta, weights_metadata, source, weights_source)
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(dtypes) == 1:  # keep the precision the prior was saved in
        prior = prior.to(dtypes.pop())
    prior.load_state_dict(state, strict=True)
    return prior.to(map_location).eval()


def _upgraded(
    cls: type[PosePrior], meta: dict[str, Any], state: dict[str, torch.Tensor]
) -> tuple[dict, dict]:
    """The config and weights of an older version of ``cls``, mapped onto today's (before any check)."""
    config, version = meta["config"], meta.get("prior_version", 1)
    if version < cls.version:  # an older parameterization, mapped onto today's (the same density)
        config, state = cls.upgrade_checkpoint(version, config, state)
    return config, state


def _registered_class(meta: dict[str, Any], source: str, expected: type[PosePrior] | None) -> type[PosePrior]:
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
    if not 1 <= version <= cls.version:
        raise CheckpointError(
            f"{source!r} holds a {meta['prior']!r} prior of version {version}; this poseprior reads "
            f"versions 1 to {cls.version}: upgrade poseprior"
        )
    return cls


# ---------------------------------------------------------------------------- pretrained + hub
def _pretrained_roots() -> list[Path]:
    """Where pretrained folders live: ``poseprior/checkpoints`` installed, ``checkpoints/`` in a checkout."""
    here = Path(__file__).resolve().parent
    return [p for p in (here / "checkpoints", here.parent / "checkpoints") if p.is_dir()]


def _pretrained_folders() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in _pretrained_roots():
        for d in sorted(root.iterdir()):
            if d.is_dir() and "." in d.name and (d / CONFIG_NAME).is_file():
                found.setdefault(d.name, d)
    return found


def list_pretrained(pattern: str = "*") -> list[str]:
    """Names (``arch.tag``, e.g. ``"global_flow.cmu"``) of the pretrained checkpoints poseprior ships."""
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
    max_parameters: int | None = MAX_PARAMETERS,
) -> PosePrior:
    """Loads a checkpoint from a local folder, or from a Hugging Face hub repo at ``revision``.

    Only ``config.json`` and ``model.safetensors`` are downloaded; nothing is unpickled or executed.
    A pinned ``revision`` (a commit hash) makes the result reproducible. ``max_parameters``: see
    :func:`load_checkpoint`.
    """
    options: dict[str, Any] = dict(
        expected=expected, map_location=map_location, max_parameters=max_parameters
    )
    path = Path(repo_id_or_dir)
    if path.is_dir():
        return load_checkpoint(path, **options)
    if path.exists() or str(repo_id_or_dir).startswith((".", "/")) or str(repo_id_or_dir).count("/") != 1:
        raise CheckpointError(
            f"{str(repo_id_or_dir)!r} is neither a checkpoint folder nor a hub repo id of the form "
            "'owner/name'"
        )
    from huggingface_hub import snapshot_download

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
    return load_checkpoint(local, **options)


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
        save_checkpoint(prior, tmp, model_card=model_card)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
