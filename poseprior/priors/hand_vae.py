r"""A VAE prior over MANO hand articulation; its ``log_prob`` is an importance-weighted estimate.

**Model.** For one hand (15 joints, 45 axis-angle values) with latent :math:`z \in \mathbb{R}^L`:

.. math::

    p(z) = \mathcal{N}(0, I), \qquad
    p(x \mid z) = \prod_{i \in \mathrm{modelled}} \mathcal{N}\big(x_i \mid \mu_i(z), s_i^2\big), \qquad
    q(z \mid x) = \mathcal{N}\big(m(x), \mathrm{diag}\,\sigma(x)^2\big).

The decoder outputs a continuous 6D rotation per joint (Zhou et al. 2019), converted to a rotation
matrix and then to the axis-angle mean :math:`\mu(z)`; :math:`s_i` is a learned per-value standard
deviation. The Gaussian is on the axis-angle values themselves (Lebesgue measure, like every
poseprior), and the decoded mean has angle at most :math:`\pi`, so poses near a half turn would be
poorly modelled; finger joints never get there.

**log_prob is an estimate.** :math:`\log p(x)` has no closed form. :meth:`HandVAEPrior.log_prob`
returns the importance-weighted (IWAE) estimate with :math:`K` = ``num_samples`` draws from
:math:`q`:

.. math:: \widehat{\log p}(x) = \log \frac1K \sum_{k=1}^K
          \frac{p(x \mid z_k)\, p(z_k)}{q(z_k \mid x)}, \qquad z_k \sim q(z \mid x),

whose exponential is an unbiased estimate of :math:`p(x)` and which is a lower bound of
:math:`\log p(x)` in expectation, tighter as :math:`K` grows (Burda et al. 2016). The ELBO (the
:math:`K = 1` bound, with the KL term in closed form) is :meth:`HandVAEPrior.elbo`. The class flag
``has_exact_log_prob`` is ``False`` and the benchmark marks the prior's rows accordingly.

**Determinism.** The :math:`K` standard-normal draws :math:`\epsilon_k` (with
:math:`z_k = m(x) + \sigma(x) \epsilon_k`) come from a fresh ``torch.Generator`` seeded with
``seed`` inside every call, and the *same* draws are used for every pose of a batch (common random
numbers). ``log_prob`` is therefore a deterministic, smooth function of the pose alone: the same
in ``train()`` and ``eval()`` mode, identical after save/load, independent of the batch a pose is
scored in, and usable as a fitting penalty without gradient noise. Pass another ``seed`` to
:meth:`HandVAEPrior.iwae` to see the spread of the estimate. The global RNG is never touched.

**Training.** :meth:`~poseprior.PosePrior.fit` and the Lightning trainer minimize
``training_loss``: the negative ELBO (``objective="elbo"``) or the negative IWAE bound with
``train_samples`` draws (``objective="iwae"``). In training mode the draws are fresh per pose; in
``fit`` they come from the ``generator`` passed to ``fit`` (so a fit is reproducible), and when
``training_loss`` is called by an outside trainer they come from torch's global RNG, like dropout
noise would. In eval mode the loss uses draws seeded with ``seed`` (one per pose), so validation
losses are deterministic. The first ``fit`` also sets the encoder's input standardization and the
decoder's base pose (the data mean) from the data; an outside trainer should call
:meth:`~poseprior.PosePrior.initialize` on its training poses first to get the same start.

**Variance floor.** The decoder standard deviations are :math:`s_i = \sqrt{\mathrm{min\_std}^2 +
e^{2\rho_i}}` with a learned :math:`\rho_i`, so :math:`s_i \geq` ``min_std``. The marginal density
is a continuous mixture of Gaussians that are all at least that wide, so a pose moved 2 degrees off
a direction the data never moves along costs a few nats, not thousands.

**Hands and conventions.** Poses are *flat-relative* (the rotation from the flat, open hand; what
AMASS stores and ``smplx`` takes with ``flat_hand_mean=True``) unless the prior is built with
``hand_convention="mean_relative"`` (offsets from the MANO mean hand, ``smplx``'s default). The
convention is recorded in ``config.json``; :meth:`HandVAEPrior.from_convention` and
:meth:`HandVAEPrior.to_convention` convert poses to and from the prior's convention given the MANO
mean hand. With layout ``"hands"`` (30 joints: left then right) and ``mirror=True``, the right hand
is mirrored into the left-hand frame (:func:`~poseprior.formats.adapters.mirror_hand`,
:math:`(a, b, c) \mapsto (a, -b, -c)`) and both hands are scored by one 15-joint model:
:math:`\log p(x) = \log p(x_{\mathrm{left}}) + \log p(\mathrm{mirror}(x_{\mathrm{right}}))`, i.e. the
hands are independent. Mirroring is only exact for flat-relative poses (the MANO left and right
mean hands are not exact mirror images), so ``mirror=True`` requires ``hand_convention="flat"``.

**Values it does not learn.** Excluded and anatomical values (see :class:`~poseprior.PosePrior`)
are left out of :math:`p(x \mid z)`, which marginalizes them exactly (the base class adds the
anatomical values' own Gaussians); the encoder sees their training means, so they cannot influence
the learned density. With mirroring the two hands may learn different values: each hand's
likelihood uses its own.

No finger data with a usable licence ships with poseprior: train the prior on your own AMASS- or
MANO-format data. :func:`synthetic_hand_poses` (re-exported from :mod:`poseprior.synthetic`) makes
a clearly SYNTHETIC set for tests and examples.

References:
    Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
    Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
    Pavlakos et al., *Expressive Body Capture: 3D Hands, Face, and Body from a Single Image*
    (VPoser), CVPR 2019.
    Zhou et al., *On the Continuity of Rotation Representations in Neural Networks*, CVPR 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .._rng import randn
from ..base import PosePrior
from ..errors import ShapeError, ValueCheckError
from ..formats import adapters
from ..formats.layouts import HAND_JOINT_NAMES, JointLayout
from ..formats.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_rot6d,
    geodesic_angle,
    matrix_to_axis_angle,
    rot6d_to_matrix,
)
from ..nn.mlp import MLP
from ..registry import register_prior
from ..synthetic import synthetic_hand_poses

__all__ = ["HandVAEPrior", "synthetic_hand_poses"]

HandConvention = Literal["flat", "mean_relative"]
Objective = Literal["elbo", "iwae"]

_LEFT = tuple(f"left_{j}" for j in HAND_JOINT_NAMES)
_RIGHT = tuple(f"right_{j}" for j in HAND_JOINT_NAMES)
_HAND_LAYOUTS = {_LEFT: "left", _RIGHT: "right", _LEFT + _RIGHT: "both"}
_LOG_2PI = math.log(2.0 * math.pi)
# Rows (pose x hand x draw) decoded at once: bounds the memory of log_prob on large batches.
_CHUNK_ROWS = 8192


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"HandVAEPrior: {name} must be a positive int, got {value!r}")
    return value


@register_prior("hand_vae")
class HandVAEPrior(PosePrior):
    r"""Creates a VAE prior over hand poses whose ``log_prob`` is an IWAE estimate.

    See the module documentation for the model, the estimate, its determinism, the variance floor
    and the hand conventions.

    Arguments:
        layout: The joints modelled: ``"left_hand"``, ``"right_hand"`` (15 joints each),
            ``"hands"`` (30: left then right) or any other layout (the model is generic; it is
            designed and sized for hands).
        latent_dim: The latent size :math:`L`.
        hidden_features: The width of the encoder and decoder MLPs.
        num_layers: The number of hidden layers of each MLP (residual, SiLU).
        num_samples: :math:`K`, the number of importance samples of :meth:`log_prob`.
        min_std: Floor (radians) of the decoder's per-value standard deviation; must be positive.
        mirror: With layout ``"hands"``, score both hands with one 15-joint model, the right hand
            mirrored into the left-hand frame.
        hand_convention: ``"flat"`` (poses relative to the flat hand) or ``"mean_relative"``
            (relative to the MANO mean hand): the convention of the poses this prior scores.
        objective: The training objective: ``"elbo"`` or ``"iwae"`` (with ``train_samples``).
        train_samples: The number of latent draws per pose in the training objective.
        seed: The seed of the per-call generator of the IWAE draws (see the module docs).
        exclude: See :class:`~poseprior.PosePrior`.
        anatomical: See :class:`~poseprior.PosePrior`.
        broad_weight: See :class:`~poseprior.PosePrior` (the broad component).
        broad_scale: See :class:`~poseprior.PosePrior`.

    Example:
        >>> prior = HandVAEPrior("left_hand", latent_dim=8, hidden_features=32, num_layers=1)
        >>> x = synthetic_hand_poses(3, generator=torch.Generator().manual_seed(0))
        >>> prior.log_prob(x).shape, prior.has_exact_log_prob
        (torch.Size([3]), False)
    """

    has_exact_log_prob = False
    default_layout = "left_hand"
    fit_defaults = {"epochs": 100, "batch_size": 256, "lr": 1e-3, "weight_decay": 0.0, "patience": 10}
    """Adam (:func:`~poseprior._fitloop.fit_adam`) on ``training_loss``: 100 epochs of batches of 256,
    lr 1e-3, patience 10 (with ``val=``); the latent draws come from fit's ``generator``."""

    def __init__(
        self,
        layout: str | JointLayout = "left_hand",
        latent_dim: int = 32,
        hidden_features: int = 512,
        num_layers: int = 5,
        num_samples: int = 64,
        min_std: float = 0.02,
        mirror: bool = False,
        hand_convention: HandConvention = "flat",
        objective: Objective = "elbo",
        train_samples: int = 1,
        seed: int = 0,
        *,
        exclude: Sequence[int] | None = None,
        anatomical: Sequence[int] | None = None,
        broad_weight: float = 0.0,
        broad_scale: float = 1.0,
    ) -> None:
        super().__init__(layout, min_std=min_std, exclude=exclude, anatomical=anatomical,
                         broad_weight=broad_weight, broad_scale=broad_scale)
        self.latent_dim = _positive_int("latent_dim", latent_dim)
        self.hidden_features = _positive_int("hidden_features", hidden_features)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.num_samples = _positive_int("num_samples", num_samples)
        self.train_samples = _positive_int("train_samples", train_samples)
        if hand_convention not in ("flat", "mean_relative"):
            raise ValueError(
                f"HandVAEPrior: hand_convention must be 'flat' or 'mean_relative', got {hand_convention!r}"
            )
        if objective not in ("elbo", "iwae"):
            raise ValueError(f"HandVAEPrior: objective must be 'elbo' or 'iwae', got {objective!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"HandVAEPrior: seed must be an int, got {seed!r}")
        if not isinstance(mirror, bool):
            raise ValueError(f"HandVAEPrior: mirror must be a bool, got {mirror!r}")
        if mirror and _HAND_LAYOUTS.get(self.layout.joints) != "both":
            raise ValueError(
                "HandVAEPrior: mirror=True needs the 'hands' layout (left hand then right hand, 30 joints), "
                f"got layout {self.layout.name!r} with {len(self.layout)} joints; "
                "a single hand needs no mirroring"
            )
        if mirror and hand_convention != "flat":
            raise ValueError(
                "HandVAEPrior: mirror=True needs hand_convention='flat': the MANO left and right mean hands "
                "are not mirror images, so mean-relative poses cannot be mirrored exactly; convert them with "
                "poseprior.formats.adapters.hand_relative_to_flat first"
            )
        self.mirror = mirror
        self.hand_convention = hand_convention
        self.objective = objective
        self.seed = seed
        # The modules see every value of a hand (excluded ones at their constants), so no shape
        # depends on D and the base class's _rebuild hook has nothing to do.
        self._slots = 2 if mirror else 1
        self._joints = len(self.layout) // self._slots
        width = 3 * self._joints
        # Both networks start with a zero last layer: q(z|x) starts at the prior and the decoder at
        # the mean pose, so the first steps fit the average before the latent structure.
        self.encoder = MLP(width, 2 * latent_dim, hidden_features, num_layers, zero_last=True)
        self.decoder = MLP(latent_dim, 6 * self._joints, hidden_features, num_layers, zero_last=True)
        # rho of the per-value decoder std s = sqrt(min_std^2 + exp(2 rho)); starts at ~0.1 rad.
        self.log_std = nn.Parameter(torch.full((width,), math.log(0.1)))
        # Data statistics set by the first fit (or initialize): the encoder's input standardization
        # and the decoder's base rotation (the mean pose). Before that: identity and flat hand.
        self.register_buffer("input_loc", torch.zeros(width))
        self.register_buffer("input_scale", torch.ones(width))

    # ------------------------------------------------------------------ description
    @property
    def latent_shape(self) -> torch.Size:
        r"""The shape of one pose's latent code: :math:`(L,)`, or :math:`(2, L)` with ``mirror``."""
        return torch.Size((self._slots, self.latent_dim) if self.mirror else (self.latent_dim,))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, latent_dim={self.latent_dim}, num_samples={self.num_samples}, "
            f"mirror={self.mirror}, hand_convention={self.hand_convention!r}"
        )

    # ------------------------------------------------------------------ public API
    def log_prob(self, x: Tensor) -> Tensor:
        r"""IWAE estimate of the log-density, with :math:`K` = ``num_samples`` and the fixed ``seed``.

        Not the exact log-density (``has_exact_log_prob`` is ``False``): see the module docs.
        Deterministic and differentiable with respect to ``x`` and the parameters.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.

        Returns:
            The estimate over the modelled values, with shape :math:`(*)`.
        """
        return super().log_prob(x)

    def iwae(self, x: Tensor, num_samples: int | None = None, seed: int | None = None) -> Tensor:
        r"""The importance-weighted estimate of :math:`\log p(x)` with any :math:`K` and seed.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.
            num_samples: :math:`K`; ``None`` means ``self.num_samples``.
            seed: The seed of the draws; ``None`` means ``self.seed``.

        Returns:
            The estimate with shape :math:`(*)`.
        """
        x, batch = self._flat(x, "iwae")
        k = self.num_samples if num_samples is None else _positive_int("iwae num_samples", num_samples)
        return self._bound(x, "iwae", k, self.seed if seed is None else seed).reshape(batch)

    def elbo(self, x: Tensor, num_samples: int | None = None, seed: int | None = None) -> Tensor:
        r"""The evidence lower bound :math:`E_q[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x) \,\|\, p(z))`.

        The KL term is in closed form; the expectation is averaged over ``num_samples`` draws.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.
            num_samples: The number of draws; ``None`` means ``self.num_samples``.
            seed: The seed of the draws; ``None`` means ``self.seed``.

        Returns:
            The ELBO with shape :math:`(*)`.
        """
        x, batch = self._flat(x, "elbo")
        k = self.num_samples if num_samples is None else _positive_int("elbo num_samples", num_samples)
        return self._bound(x, "elbo", k, self.seed if seed is None else seed).reshape(batch)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The mean and standard deviation of :math:`q(z \mid x)`.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.

        Returns:
            ``(loc, scale)``, each with shape :math:`(*, L)`, or :math:`(*, 2, L)` with ``mirror``
            (left hand, then the mirrored right hand).
        """
        x, batch = self._flat(x, "encode")
        loc, scale = self._encode(self._hands(x))
        return loc.reshape(*batch, *self.latent_shape), scale.reshape(*batch, *self.latent_shape)

    def decode(self, z: Tensor) -> Tensor:
        r"""The decoded mean pose :math:`\mu(z)`, the values it does not learn at their training means.

        Differentiable with respect to ``z``: fitting a pose as ``decode(z)`` with the penalty
        ``z.pow(2).sum(-1)`` is how VPoser is used in SMPLify-X.

        Arguments:
            z: Latent codes with shape :math:`(*, L)`, or :math:`(*, 2, L)` with ``mirror``.

        Returns:
            Axis-angle poses with shape :math:`(*, J, 3)`.
        """
        ref = self.log_std
        shape = tuple(self.latent_shape)
        if (
            not isinstance(z, Tensor)
            or z.dim() < len(shape)
            or tuple(z.shape[z.dim() - len(shape) :]) != shape
        ):
            got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            hint = "; with mirror=True each pose has one code per hand" if self.mirror else ""
            raise ShapeError(
                "HandVAEPrior.decode: expected latent codes with shape "
                f"(*batch, {', '.join(map(str, shape))}), got {got}{hint}"
            )
        if z.device != ref.device or not z.is_floating_point():
            raise ValueCheckError(
                f"HandVAEPrior.decode: expected a floating-point tensor on {ref.device}, "
                f"got {z.dtype} on {z.device}"
            )
        batch = z.shape[: z.dim() - len(shape)]
        z = z.to(ref.dtype).reshape(-1, self._slots, self.latent_dim)
        mean = torch.where(self._mask(), self._decode_mean(z), self._constants())
        return self._unhands(mean).reshape(*batch, *self.event_shape)

    def reconstruction_error(self, x: Tensor, metric: Literal["geodesic", "abs"] = "geodesic") -> Tensor:
        r"""How far ``decode(encode(x).loc)`` is from ``x``, in radians.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.
            metric: ``"geodesic"``: the mean over joints of the rotation angle between the input
                and reconstructed joint rotations (joints with at least one learned value);
                ``"abs"``: the mean absolute difference over the learned values.

        Returns:
            The error per pose, with shape :math:`(*)`.
        """
        if metric not in ("geodesic", "abs"):
            raise ValueError(
                f"HandVAEPrior.reconstruction_error: metric must be 'geodesic' or 'abs', got {metric!r}"
            )
        x, batch = self._flat(x, "reconstruction_error")
        loc, _ = self._encode(self._hands(x))
        rec = self.decode(loc.reshape(-1, *self.latent_shape))
        if metric == "abs":
            err = (rec - x).abs().reshape(x.shape[0], -1)[:, self.learned].mean(-1)
        else:
            joints = self.learned_mask.any(-1)
            angle = geodesic_angle(axis_angle_to_matrix(x[:, joints]), axis_angle_to_matrix(rec[:, joints]))
            err = angle.mean(-1)
        return err.reshape(batch)

    def latent_penalty(self, x: Tensor) -> Tensor:
        r"""The squared norm of the posterior mean, :math:`\lVert m(x) \rVert^2`, summed over hands.

        A regularizer for fitting poses directly in pose space, in the spirit of VPoser's latent
        norm penalty (small codes are typical poses). Differentiable with respect to ``x``.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.

        Returns:
            The penalty with shape :math:`(*)`.
        """
        x, batch = self._flat(x, "latent_penalty")
        loc, _ = self._encode(self._hands(x))
        return loc.pow(2).sum((-2, -1)).reshape(batch)

    def from_convention(self, x: Tensor, convention: HandConvention, *, mean: Tensor | None = None) -> Tensor:
        r"""Converts hand poses given in ``convention`` to this prior's ``hand_convention``.

        Arguments:
            x: Poses of this prior's hand layout with shape :math:`(*, J, 3)`.
            convention: ``"flat"`` or ``"mean_relative"``: the convention ``x`` is in.
            mean: The MANO mean hand, needed when the conventions differ: with shape
                :math:`(15, 3)` or :math:`(45,)` for one hand, :math:`(30, 3)` or :math:`(90,)`
                (left then right, e.g. ``smplx``'s ``left_hand_mean`` and ``right_hand_mean``) for
                layout ``"hands"``.

        Returns:
            The poses in this prior's convention, with shape :math:`(*, J, 3)`.
        """
        return self._convert(x, convention, self.hand_convention, mean, "from_convention")

    def to_convention(self, x: Tensor, convention: HandConvention, *, mean: Tensor | None = None) -> Tensor:
        r"""Converts hand poses in this prior's convention (e.g. samples) to ``convention``.

        The inverse of :meth:`from_convention`, with the same arguments.
        """
        return self._convert(x, self.hand_convention, convention, mean, "to_convention")

    @classmethod
    def upgrade_checkpoint(cls, version: int, config: dict[str, Any], state: dict[str, Tensor]) -> tuple[dict, dict]:
        """Version 1 had its own ``stats_initialized`` flag; it is the base class's ``initialized`` now."""
        config, state = super().upgrade_checkpoint(version, config, state)
        state = dict(state)
        state["initialized"] = state.pop("stats_initialized")
        return config, state

    # ------------------------------------------------------------------ hooks
    def _log_prob(self, x: Tensor) -> Tensor:
        return self._bound(x, "iwae", self.num_samples, self.seed)

    def _training_loss(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        xh = self._hands(x)
        loc, scale = self._encode(xh)
        if not self.training:
            # Validation: draws seeded by `seed`, so the loss is deterministic. Unlike log_prob's
            # they differ between poses: a draw shared by the whole batch would not average out
            # and would make early stopping chase its noise.
            generator = torch.Generator(device=loc.device).manual_seed(self.seed)
        eps = randn((*loc.shape[:-1], self.train_samples, self.latent_dim), generator, loc)
        return -self._combine(xh, loc, scale, eps, self.objective).mean()

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        z = randn((n, self._slots, self.latent_dim), generator, self.log_std)
        noise = randn((n, self._slots, 3 * self._joints), generator, self.log_std)
        y = self._decode_mean(z) + self._std() * noise
        return self._unhands(torch.where(self._mask(), y, self._constants()))

    def _initialize(self, x: Tensor) -> None:
        r"""Sets the encoder's input standardization and the decoder's base pose from data.

        ``fit`` calls it on its first call; calling :meth:`~poseprior.PosePrior.initialize`
        explicitly sets them again. Values are standardized with ``scale = max(std, min_std)``.
        """
        xe = torch.where(self._mask(), self._hands(x), self._constants()).reshape(-1, 3 * self._joints)
        with torch.no_grad():
            self.input_loc.copy_(xe.mean(0))
            self.input_scale.copy_(xe.std(0).clamp_min(self.min_std))

    # ------------------------------------------------------------------ internals
    def _flat(self, x: Tensor, where: str) -> tuple[Tensor, torch.Size]:
        x = self._check(x, where)
        return x.reshape(-1, *self.event_shape), x.shape[:-2]

    def _sign(self) -> Tensor:
        """(H, 1, 3): the mirroring of each hand slot (the right hand's with ``mirror``)."""
        sign = torch.ones(self._slots, 1, 3, dtype=self.log_std.dtype, device=self.log_std.device)
        if self.mirror:
            sign[1, 0, 1:] = -1.0  # mirror_hand: (a, b, c) -> (a, -b, -c)
        return sign

    def _hands(self, x: Tensor) -> Tensor:
        """(N, J, 3) -> (N, H, 3 J/H): one row per hand slot, the right hand mirrored with ``mirror``."""
        n = x.shape[0]
        return (x.reshape(n, self._slots, self._joints, 3) * self._sign()).reshape(n, self._slots, -1)

    def _unhands(self, y: Tensor) -> Tensor:
        """(N, H, 3 J/H) -> (N, J, 3): the inverse of :meth:`_hands` (mirroring is an involution)."""
        n = y.shape[0]
        return (y.reshape(n, self._slots, self._joints, 3) * self._sign()).reshape(n, -1, 3)

    def _mask(self) -> Tensor:
        """(H, 3 J/H) bool: the learned values of each hand slot."""
        return self.learned.reshape(self._slots, -1)

    def _constants(self) -> Tensor:
        """(1, H, 3 J/H): the training means, in the slots' frames."""
        return self._hands(self.data_mean.to(self.log_std.dtype).reshape(1, *self.event_shape))

    def _std(self) -> Tensor:
        """(3 J/H,): the decoder's per-value standard deviation, at least ``min_std``."""
        return torch.sqrt(self.min_std**2 + torch.exp(2.0 * self.log_std))

    def _encode(self, xh: Tensor) -> tuple[Tensor, Tensor]:
        """(N, H, W) -> loc, scale (N, H, L). The values it does not learn are replaced by their means."""
        xe = torch.where(self._mask(), xh, self._constants())
        h = self.encoder((xe - self.input_loc) / self.input_scale)
        loc, log_scale = h.chunk(2, dim=-1)
        return loc, log_scale.exp()

    def _decode_mean(self, z: Tensor) -> Tensor:
        """(..., L) -> (..., 3 J/H): 6D per joint (offset from the mean pose's) -> matrix -> axis-angle."""
        base = axis_angle_to_rot6d(self.input_loc.reshape(self._joints, 3))
        d6 = self.decoder(z).unflatten(-1, (self._joints, 6)) + base
        return matrix_to_axis_angle(rot6d_to_matrix(d6)).flatten(-2)

    def _combine(self, xh: Tensor, loc: Tensor, scale: Tensor, eps: Tensor, kind: str) -> Tensor:
        r"""The bound per pose (N,), from draws ``eps`` with shape (K, L) or (N, H, K, L)."""
        z = loc.unsqueeze(-2) + scale.unsqueeze(-2) * eps  # (N, H, K, L)
        std = self._std()
        resid = (xh.unsqueeze(-2) - self._decode_mean(z)) / std
        terms = -0.5 * resid.pow(2) - std.log() - 0.5 * _LOG_2PI
        log_lik = torch.where(self._mask().unsqueeze(-2), terms, 0.0).sum(-1)  # (N, H, K)
        if kind == "elbo":
            kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1.0).sum(-1) - scale.log().sum(-1)
            per_hand = log_lik.mean(-1) - kl
        else:
            log_pz = -0.5 * z.pow(2).sum(-1)
            log_qz = -0.5 * eps.pow(2).sum(-1) - scale.log().sum(-1, keepdim=True)
            k = z.shape[-2]
            per_hand = torch.logsumexp(log_lik + log_pz - log_qz, dim=-1) - math.log(k)
        return per_hand.sum(-1)

    def _bound(self, x: Tensor, kind: str, k: int, seed: int) -> Tensor:
        """The ELBO or IWAE bound of poses (N, J, 3) with K draws seeded by ``seed``, in chunks."""
        ref = self.log_std
        gen = torch.Generator(device=ref.device).manual_seed(seed)
        # Drawn in float64 whatever the dtype, so a float32 copy of the prior uses the same draws.
        eps = torch.randn(k, self.latent_dim, generator=gen, dtype=torch.float64, device=ref.device)
        eps = eps.to(ref.dtype)
        xh = self._hands(x)
        step = max(1, _CHUNK_ROWS // (k * self._slots))
        out = []
        for i in range(0, xh.shape[0], step):
            part = xh[i : i + step]
            loc, scale = self._encode(part)
            out.append(self._combine(part, loc, scale, eps, kind))
        return torch.cat(out) if out else xh.new_zeros(0)

    def _convert(self, x: Tensor, src: str, dst: str, mean: Tensor | None, where: str) -> Tensor:
        where = f"HandVAEPrior.{where}"
        side = _HAND_LAYOUTS.get(self.layout.joints)
        if side is None:
            raise ValueError(
                f"{where}: hand conventions apply to hand layouts ('left_hand', 'right_hand', 'hands'), "
                f"but this prior's layout is {self.layout.name!r}"
            )
        for name, value in (("convention", src), ("convention", dst)):
            if value not in ("flat", "mean_relative"):
                raise ValueError(f"{where}: {name} must be 'flat' or 'mean_relative', got {value!r}")
        x = self._check(x, where.split(".")[1])
        if src == dst:
            return x
        if mean is None:
            raise ValueError(
                f"{where}: converting {src} poses to {dst} needs the MANO mean hand: pass mean= "
                "(the 'hands_meanl'/'hands_meanr' arrays of the MANO model, or smplx's "
                "left_hand_mean/right_hand_mean)"
            )
        mean = torch.as_tensor(mean)
        hands = 2 if side == "both" else 1
        if mean.numel() != 45 * hands:
            raise ShapeError(
                f"{where}: expected the mean hand with {15 * hands} joints ((15, 3) or (45,) per hand"
                f"{', left then right' if hands == 2 else ''}), got shape {tuple(mean.shape)}"
            )
        means = mean.reshape(hands, 15, 3)
        fn = adapters.hand_relative_to_flat if src == "mean_relative" else adapters.hand_flat_to_relative
        parts = [fn(x[..., 15 * h : 15 * (h + 1), :], means[h]) for h in range(hands)]
        return torch.cat(parts, dim=-2)
