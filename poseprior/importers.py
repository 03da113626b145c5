r"""Importers for the published weights of VPoser v2 and SMPLify's GMM, offline and without unpickling code.

Users bring the files they obtained under their licences; poseprior ships neither. Both importers
read only plain arrays and refuse anything else with a :class:`~poseprior.CheckpointError`:

- :func:`import_vposer` reads a VPoser v2 checkpoint (human_body_prior's Lightning ``.ckpt``, or a
  plain state dict) with ``torch.load(..., weights_only=True)``, which rebuilds tensors and plain
  containers only, and maps it onto :class:`~poseprior.priors.vae.VAEPrior`. VPoser's eval-mode
  BatchNorm layers are affine and its consecutive linear layers compose, so the converted prior
  computes VPoser's encoder and decoder exactly (up to float rounding): the same decoded poses and
  the same :math:`q(z \mid x)`.
- :func:`import_smplify_gmm` reads SMPLify's ``gmm_08.pkl`` (a pickled dict of NumPy arrays) with
  :class:`NumpyOnlyUnpickler`, whose ``find_class`` returns NumPy's array reconstruction functions
  and refuses every other global, and maps it onto :class:`~poseprior.priors.gmm.GMMPrior`.

**Conventions.** VPoser v2 scores the 63 values of the 21 SMPL-X body joints (SMPL joints 1-21,
pelvis excluded), axis-angle, in the order of the ``"body"`` layout: the converted prior takes
poses of that layout unchanged. SMPLify's mixture is over the 69 values of SMPL's ``pose[3:]``:
those 21 body joints followed by SMPL's ``left_hand`` and ``right_hand`` joints (SMPL joints 22
and 23, which SMPL-H and SMPL-X replace by their finger articulation). The importer keeps the
marginal over the 63 body values (the sub-means and covariance blocks, weights unchanged: the
exact marginal of a Gaussian mixture), so its ``log_prob`` is SMPLify's mixture density of the
body pose with the two hand joints integrated out. See ``docs/conventions.md``.

**What the source does not define.** VPoser was trained with mesh and joint losses, not a
likelihood over axis-angle values, so the converted prior's decoder standard deviation (which its
IWAE ``log_prob`` needs) is a choice, ``decoder_std`` (0.1 rad by default). The converted priors
have no broad component (``broad_weight=0``) and no anatomical values: they are the published
models as they are.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import CheckpointError
from .formats.rotations import axis_angle_to_rot6d
from .priors.gmm import GMMPrior
from .priors.vae import VAEPrior

__all__ = [
    "NumpyOnlyUnpickler",
    "import_smplify_gmm",
    "import_vposer",
    "read_smplify_gmm",
    "read_vposer_state",
]

_MAX_BYTES = 256 << 20  # both published files are well under 10 MB
_BODY_VALUES = 63
_SMPL_VALUES = 69
_BN_EPS = 1e-5  # torch's BatchNorm1d default, which VPoser uses
# VPoser v2's layers, by their index in encoder_net / decoder_net (human_body_prior's vposer_model.py).
_VPOSER_LAYERS = {
    "encoder_net.1": "bn", "encoder_net.2": "linear", "encoder_net.4": "bn", "encoder_net.6": "linear",
    "encoder_net.7": "linear", "encoder_net.8.mu": "linear", "encoder_net.8.logvar": "linear",
    "decoder_net.0": "linear", "decoder_net.3": "linear", "decoder_net.5": "linear",
}  # fmt: skip
_PARAMS = {"linear": ("weight", "bias"), "bn": ("weight", "bias", "running_mean", "running_var")}
_OPTIONAL = ("num_batches_tracked",)


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """What ``_codecs.encode`` does in a protocol-2 pickle of array bytes; only latin1 is accepted."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, whatever its module
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_bytes}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    r"""An unpickler that rebuilds NumPy arrays, dicts, lists and plain values, and nothing else.

    ``find_class`` returns NumPy's array reconstruction (``_reconstruct``, ``_frombuffer``,
    ``ndarray``, ``dtype``, and ``_codecs.encode`` restricted to latin1, which protocol-2 pickles
    use for array bytes) and raises ``pickle.UnpicklingError`` for any other global, so no code
    of the file's choosing runs. Python 2 strings are read as latin1 (SMPLify's files were written
    by Python 2).
    """

    _ALLOWED = _allowed_globals()

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"the pickle refers to {module}.{name}; only NumPy arrays are read from it"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(
            "the pickle refers to persistent objects; only NumPy arrays are read from it"
        )


def _read_bytes(path: str | Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist or is not a file")
    if path.stat().st_size > _MAX_BYTES:
        raise CheckpointError(
            f"{what} {str(path)!r} is {path.stat().st_size / 2**20:.0f} MB; the published file is well under "
            f"{_MAX_BYTES >> 20} MB, so this is not it"
        )
    return path.read_bytes()


# ---------------------------------------------------------------------------- SMPLify's GMM
def read_smplify_gmm(path: str | Path) -> dict[str, np.ndarray]:
    r"""The arrays of SMPLify's ``gmm_08.pkl``: ``means`` (M, 69), ``covars`` (M, 69, 69), ``weights`` (M,).

    Read with :class:`NumpyOnlyUnpickler` and checked: exactly those keys, floating-point finite
    values, consistent shapes, positive weights summing to 1 (within 1e-3; then normalized).

    Raises:
        CheckpointError: for any other file, naming what differs.
    """
    source = str(path)
    data = _read_bytes(path, "SMPLify GMM file")
    try:
        gmm = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{source!r} is not SMPLify's gmm_08.pkl (a pickle of NumPy arrays): {e}"
        ) from None
    except Exception as e:  # a truncated or corrupt pickle fails in many ways; none runs foreign code
        raise CheckpointError(f"{source!r} is not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(gmm, Mapping) or set(gmm) != {"means", "covars", "weights"}:
        keys = sorted(map(str, gmm)) if isinstance(gmm, Mapping) else type(gmm).__name__
        raise CheckpointError(
            f"{source!r}: expected SMPLify's dict with the keys ['covars', 'means', 'weights'], got {keys}"
        )
    arrays = {}
    for key in ("means", "covars", "weights"):
        value = gmm[key]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or not np.isfinite(value).all():
            got = f"{value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__
            raise CheckpointError(f"{source!r}: {key!r} must be a finite floating-point array, got {got}")
        arrays[key] = value.astype(np.float64)
    m = arrays["weights"].shape[0] if arrays["weights"].ndim == 1 else -1
    expected = {"means": (m, _SMPL_VALUES), "covars": (m, _SMPL_VALUES, _SMPL_VALUES), "weights": (m,)}
    shapes = {k: v.shape for k, v in arrays.items()}
    if m < 1 or shapes != expected:
        raise CheckpointError(
            f"{source!r}: expected weights (M,), means (M, 69) and covars (M, 69, 69) over SMPL's 69 body "
            f"pose values, got {', '.join(f'{k} {v}' for k, v in shapes.items())}"
        )
    w = arrays["weights"]
    if (w <= 0).any() or abs(w.sum() - 1.0) > 1e-3:
        raise CheckpointError(f"{source!r}: the weights must be positive and sum to 1, got {w.tolist()}")
    arrays["weights"] = w / w.sum()
    return arrays


def import_smplify_gmm(path: str | Path) -> GMMPrior:
    r"""A :class:`~poseprior.priors.gmm.GMMPrior` over the ``"body"`` layout from SMPLify's ``gmm_08.pkl``.

    The mixture's marginal over the 21 body joints (SMPL's hand joints 22-23 integrated out; see
    the module docs). No broad component, no anatomical values, covariances as published.
    ``penalty(x, kind="max_component")`` then gives SMPLify's energy up to a constant.
    """
    arrays = read_smplify_gmm(path)
    weights = torch.from_numpy(arrays["weights"])
    means = torch.from_numpy(arrays["means"][:, :_BODY_VALUES])
    covars = torch.from_numpy(arrays["covars"][:, :_BODY_VALUES, :_BODY_VALUES])
    prior = GMMPrior("body", n_components=len(weights), exclude=[], anatomical=[], broad_weight=0.0).double()
    try:
        prior.set_components(weights, means, covars)
    except ValueError as e:
        raise CheckpointError(f"{str(path)!r}: {e}") from None
    with torch.no_grad():
        prior.data_mean.copy_(weights @ means)  # the mixture's mean pose
        prior.initialized.fill_(True)
    return prior.float().eval()


# ---------------------------------------------------------------------------- VPoser v2
def read_vposer_state(path: str | Path) -> dict[str, Tensor]:
    """The VPoser v2 weights of a checkpoint: ``encoder_net.*`` and ``decoder_net.*`` tensors (float64).

    Accepts human_body_prior's Lightning ``.ckpt`` (weights under ``state_dict``, prefixed
    ``vp_model.``; its ``bm_train.*`` body model and training state are ignored) or a plain state
    dict. Read with ``torch.load(weights_only=True)``; names and shapes are checked.

    Raises:
        CheckpointError: for any other file, naming what differs.
    """
    source = str(path)
    data = _read_bytes(path, "VPoser checkpoint")
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{source!r} holds Python objects besides tensors, which are never unpickled here ({first}). "
            "If you trust the file, load it yourself and save its weights alone: "
            "torch.save(torch.load(CKPT, weights_only=False)['state_dict'], 'vposer_state.pt'), "
            "then import that"
        ) from None
    except Exception as e:  # not a torch file at all, truncated, ...
        raise CheckpointError(
            f"{source!r} is not a readable torch checkpoint ({type(e).__name__}: {e})"
        ) from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source!r}: expected a state dict (or a checkpoint with 'state_dict'), "
            f"got {type(ckpt).__name__}"
        )
    prefix = "vp_model."
    state = {k.removeprefix(prefix): v for k, v in state.items() if isinstance(k, str)}
    return _check_vposer(state, source)


def _check_vposer(state: dict[str, Any], source: str) -> dict[str, Tensor]:
    """The VPoser v2 tensors of ``state`` (float64), or a CheckpointError saying what is missing or wrong."""
    found = {k: v for k, v in state.items() if k.startswith(("encoder_net.", "decoder_net."))}
    if not found:
        v1 = any(k.startswith("bodyprior_") for k in state)
        hint = "; it looks like VPoser v1, whose architecture differs: use VPoser v2 (V02_05)" if v1 else ""
        raise CheckpointError(
            f"{source!r}: no VPoser v2 weights (encoder_net.* / decoder_net.*) among its {len(state)} "
            f"entries {sorted(state)[:5]}{hint}"
        )
    expected = {f"{layer}.{p}" for layer, kind in _VPOSER_LAYERS.items() for p in _PARAMS[kind]}
    optional = {f"{layer}.{p}" for layer, kind in _VPOSER_LAYERS.items() if kind == "bn" for p in _OPTIONAL}
    missing, unexpected = sorted(expected - found.keys()), sorted(found.keys() - expected - optional)
    if missing or unexpected:
        raise CheckpointError(
            f"{source!r} is not a VPoser v2 checkpoint: missing {missing}, unexpected {unexpected}"
        )
    out = {}
    for key in sorted(expected):
        value = found[key]
        ok = isinstance(value, Tensor) and value.is_floating_point() and bool(torch.isfinite(value).all())
        if not ok:
            raise CheckpointError(f"{source!r}: {key} must be a finite floating-point tensor")
        out[key] = value.detach().double()
    hidden, features = out["encoder_net.2.weight"].shape
    latent = out["encoder_net.8.mu.weight"].shape[0]
    if features != _BODY_VALUES:
        raise CheckpointError(
            f"{source!r}: the encoder takes {features} values; VPoser v2 scores the 63 values of the 21 "
            "body joints"
        )
    shapes = {"encoder_net.1": (features,), "encoder_net.2": (hidden, features), "encoder_net.4": (hidden,),
              "encoder_net.6": (hidden, hidden), "encoder_net.7": (hidden, hidden),
              "encoder_net.8.mu": (latent, hidden), "encoder_net.8.logvar": (latent, hidden),
              "decoder_net.0": (hidden, latent), "decoder_net.3": (hidden, hidden),
              "decoder_net.5": (6 * features // 3, hidden)}  # fmt: skip
    for layer, shape in shapes.items():
        for p in _PARAMS[_VPOSER_LAYERS[layer]]:
            want = shape if p == "weight" else shape[:1]
            if tuple(out[f"{layer}.{p}"].shape) != want:
                raise CheckpointError(
                    f"{source!r}: {layer}.{p} has shape {tuple(out[f'{layer}.{p}'].shape)}, expected {want} "
                    f"for VPoser v2 with {features} input values, {hidden} neurons and a {latent}-d latent"
                )
    return out


def import_vposer(path: str | Path, *, decoder_std: float = 0.1, min_std: float = 0.02) -> VAEPrior:
    r"""A :class:`~poseprior.priors.vae.VAEPrior` over the ``"body"`` layout computing VPoser v2's networks.

    Arguments:
        path: A VPoser v2 checkpoint (see :func:`read_vposer_state`).
        decoder_std: The per-value standard deviation (radians) of :math:`p(x \mid z)`, which
            VPoser does not define (see the module docs); must exceed ``min_std``.
        min_std: The prior's ``min_std`` (floor of the decoder's standard deviation when fitted further).

    Returns:
        The prior in float32 and eval mode: ``decode`` gives VPoser's ``decode(z)['pose_body']`` and
        ``encode`` VPoser's :math:`q(z \mid x)`.
    """
    ok = isinstance(decoder_std, (int, float)) and math.isfinite(decoder_std) and decoder_std > min_std > 0
    if not ok:
        raise ValueError(
            f"import_vposer: decoder_std must be finite and > min_std = {min_std}, got {decoder_std!r}"
        )
    w = read_vposer_state(path)
    hidden, latent = w["encoder_net.2.weight"].shape[0], w["encoder_net.8.mu.weight"].shape[0]
    prior = VAEPrior(
        "body", latent_dim=latent, hidden_features=hidden, encoder_layers=1, decoder_layers=2,
        activation="leaky_relu", residual=False, min_std=min_std, exclude=[], anatomical=[], broad_weight=0.0,
    ).double()
    _load_vposer(prior, w, decoder_std)
    return prior.float().eval()


@torch.no_grad()
def _load_vposer(prior: VAEPrior, w: dict[str, Tensor], decoder_std: float) -> None:
    """Folds VPoser's eval-mode network into ``prior`` (float64): see the module docs."""

    def bn(name: str) -> tuple[Tensor, Tensor, Tensor]:  # BN(x) = (x - mean) / sd * gamma + beta
        sd = (w[f"{name}.running_var"] + _BN_EPS).sqrt()
        return w[f"{name}.running_mean"], sd, (w[f"{name}.weight"], w[f"{name}.bias"])

    mean1, sd1, (g1, b1) = bn("encoder_net.1")
    # Our encoder standardizes with (mean1, sd1); gamma and beta fold into the first linear layer.
    w2, c2 = w["encoder_net.2.weight"], w["encoder_net.2.bias"]
    first = (w2 * g1, w2 @ b1 + c2)
    # After the LeakyReLU: BN2 (affine), then three linear maps in a row (6, 7, and the heads) = one.
    mean2, sd2, (g2, b2) = bn("encoder_net.4")
    scale2, shift2 = g2 / sd2, b2 - mean2 * g2 / sd2
    heads_w = torch.cat([w["encoder_net.8.mu.weight"], w["encoder_net.8.logvar.weight"]])
    heads_b = torch.cat([w["encoder_net.8.mu.bias"], w["encoder_net.8.logvar.bias"]])
    w6, c6 = w["encoder_net.6.weight"], w["encoder_net.6.bias"]
    w7, c7 = w["encoder_net.7.weight"], w["encoder_net.7.bias"]
    chain = heads_w @ w7 @ w6
    last = (chain * scale2, heads_w @ (w7 @ (w6 @ shift2 + c6) + c7) + heads_b)
    # Decoder: VPoser reads each joint's 6 outputs as a 3x2 matrix row by row (columns interleaved);
    # ours are the first column then the second, as offsets from the mean pose's 6D rotation.
    joints = _BODY_VALUES // 3
    perm = torch.tensor([6 * j + 2 * (k % 3) + k // 3 for j in range(joints) for k in range(6)])
    base = axis_angle_to_rot6d(mean1.reshape(joints, 3)).reshape(-1)
    out = (w["decoder_net.5.weight"][perm], w["decoder_net.5.bias"][perm] - base)
    layers = [
        (prior.encoder.hidden[0], first), (prior.encoder.out, last),
        (prior.decoder.hidden[0], (w["decoder_net.0.weight"], w["decoder_net.0.bias"])),
        (prior.decoder.hidden[1], (w["decoder_net.3.weight"], w["decoder_net.3.bias"])),
        (prior.decoder.out, out),
    ]  # fmt: skip
    for layer, (weight, bias) in layers:
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    prior.input_loc.copy_(mean1)
    prior.input_scale.copy_(sd1)
    prior.data_mean.copy_(mean1)  # VPoser's running mean of its training poses
    prior.log_std.fill_(0.5 * math.log(decoder_std**2 - prior.min_std**2))
    prior.initialized.fill_(True)
