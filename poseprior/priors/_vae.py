r"""The machinery shared by the VAE priors (:mod:`~poseprior.priors.vae`, :mod:`~poseprior.priors.hand_vae`).

**Model.** For a pose split into :math:`H` *slots* of the same joints (one slot; two for mirrored
hands) and a latent :math:`z \in \mathbb{R}^L` per slot:

.. math::

    p(z) = \mathcal{N}(0, I), \qquad
    p(x \mid z) = \prod_{i \in \mathrm{learned}} \mathcal{N}\big(x_i \mid \mu_i(z), s_i^2\big), \qquad
    q(z \mid x) = \mathcal{N}\big(m(x), \mathrm{diag}\,\sigma(x)^2\big).

The decoder outputs a continuous 6D rotation per joint (Zhou et al. 2019; the first two matrix
columns), as an offset from the 6D rotation of the training mean pose, converted to a rotation
matrix and then to the axis-angle mean :math:`\mu(z)` (angle at most :math:`\pi`). :math:`s_i =
\sqrt{\mathrm{min\_std}^2 + e^{2\rho_i}}` is a learned per-value standard deviation, at least
``min_std``. The Gaussian is on the axis-angle values themselves (Lebesgue measure, like every
poseprior).

**Training noise.** With ``noise_std`` > 0, ``fit`` adds Gaussian noise of that standard
deviation (radians) to every training pose (encoder input and reconstruction target alike), so
the VAE learns the data convolved with :math:`\mathcal{N}(0, \mathrm{noise\_std}^2 I)`, as
:class:`~poseprior.priors.global_flow.GlobalFlowPrior` does: the decoder's standard deviation
then covers at least the noise, and poses a little off the training manifold (other subjects,
other retargetings) are not scored as if they were impossible. Evaluation is not noisy.

**log_prob is an estimate**: the importance-weighted (IWAE) bound with :math:`K` =
``num_samples`` draws from :math:`q`, whose exponential is an unbiased estimate of :math:`p(x)`
(Burda et al. 2016). The :math:`K` standard-normal draws come from a fresh ``torch.Generator``
seeded with ``seed`` inside every call and serve every pose of a batch, so ``log_prob`` is a
deterministic, smooth function of the pose (see :class:`~poseprior.priors.hand_vae.HandVAEPrior`).

**Bounded encoder.** The encoder's mean is the identity on :math:`[-10, 10]` and saturates
smoothly (``tanh``) at :math:`\pm 15`; its log-scale is the identity on :math:`[-8, 2]` and
saturates at :math:`-9` and :math:`3` (for ``softplus`` scales, the pre-activation is bounded
likewise). Inside those ranges, where every trained encoder works on real poses, nothing changes;
outside, a pose tens of radians from the data can no longer drive :math:`\sigma(x)` to
:math:`10^{26}` and the latent draws to values the decoder turns into inf. With the latent
bounded, ``log_prob``, its gradient and Hessian-vector products stay finite for any finite pose
(tested up to 50 rad, in float32 and float64), as the flows bound their log-scales
(:func:`~poseprior.nn.flows.soft_clamp`).

References:
    Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
    Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
    Pavlakos et al., *Expressive Body Capture: 3D Hands, Face, and Body from a Single Image*
    (VPoser), CVPR 2019.
    Zhou et al., *On the Continuity of Rotation Representations in Neural Networks*, CVPR 2019.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._checks import check_number, check_probability
from .._rng import randn
from ..base import PosePrior
from ..errors import ShapeError, ValueCheckError
from ..formats.adapters import swap_limbs
from ..formats.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_rot6d,
    geodesic_angle,
    matrix_to_axis_angle,
    rot6d_to_matrix,
)
from ..nn.mlp import MLP

__all__ = ["VAEBase", "bounded"]

Objective = Literal["elbo", "iwae"]

_LOG_2PI = math.log(2.0 * math.pi)
# Rows (pose x slot x draw) decoded at once: bounds the memory of log_prob on large batches.
_CHUNK_ROWS = 8192
LOC_RANGE = (-10.0, 10.0, 5.0)
"""Identity range of the encoder's mean and the width of its saturation (see the module docs)."""
LOG_SCALE_RANGE = (-8.0, 2.0, 1.0)
"""Identity range of the encoder's log-scale (or softplus pre-activation) and its saturation width."""


def bounded(u: Tensor, low: float, high: float, margin: float) -> Tensor:
    r"""The identity on :math:`[\mathrm{low}, \mathrm{high}]`, saturating smoothly beyond, within ``margin``.

    Above ``high`` it is :math:`\mathrm{high} + m \tanh((u - \mathrm{high}) / m)` (below ``low``
    likewise): continuous with two continuous derivatives, so values inside the range, and their
    gradients, are exactly those of the unbounded network.
    """
    above = high + margin * torch.tanh((u - high) / margin)
    below = low + margin * torch.tanh((u - low) / margin)
    return torch.where(u > high, above, torch.where(u < low, below, u))


def positive_int(owner: str, name: str, value: object) -> int:
    """``value`` if it is an int >= 1, else a ValueError naming ``owner`` and ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value


class VAEBase(PosePrior):
    r"""The VAE machinery of the module docs; subclasses call :meth:`_build` in their constructor.

    Not registered: :class:`~poseprior.priors.vae.VAEPrior` and
    :class:`~poseprior.priors.hand_vae.HandVAEPrior` are the priors.
    """

    has_exact_log_prob = False
    scale_kind: ClassVar[Literal["exp", "softplus"]] = "exp"
    """How the encoder's raw output becomes :math:`\\sigma(x)`: ``exp`` or ``softplus`` (VPoser's)."""

    def _build(
        self,
        *,
        latent_dim: int,
        hidden_features: int,
        encoder_layers: int,
        decoder_layers: int,
        num_samples: int,
        objective: str,
        train_samples: int,
        seed: int,
        slots: int = 1,
        activation: str = "silu",
        residual: bool = True,
        noise_std: float = 0.0,
        part_swap: float = 0.0,
    ) -> None:
        """Validates the shared options, stores them and builds the networks and buffers."""
        owner = type(self).__name__
        self.latent_dim = positive_int(owner, "latent_dim", latent_dim)
        self.hidden_features = positive_int(owner, "hidden_features", hidden_features)
        positive_int(owner, "encoder_layers", encoder_layers)
        positive_int(owner, "decoder_layers", decoder_layers)
        self.num_samples = positive_int(owner, "num_samples", num_samples)
        self.train_samples = positive_int(owner, "train_samples", train_samples)
        if objective not in ("elbo", "iwae"):
            raise ValueError(f"{owner}: objective must be 'elbo' or 'iwae', got {objective!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"{owner}: seed must be an int, got {seed!r}")
        self.objective = objective
        self.seed = seed
        self.noise_std = check_number(f"{owner}: noise_std", noise_std, strict=False)
        self.part_swap = check_probability(f"{owner}: part_swap", part_swap)
        # The modules see every value of a slot (the values they do not learn at their training
        # means), so no shape depends on D and the base class's _rebuild hook has nothing to do.
        self._slots = slots
        self._joints = len(self.layout) // slots
        width = 3 * self._joints
        # Both networks start with a zero last layer: q(z|x) starts at the prior and the decoder at
        # the mean pose, so the first steps fit the average before the latent structure.
        # The initial weights come from a generator seeded with `seed`, not from torch's global one.
        gen = torch.Generator().manual_seed(seed)
        kw = {"activation": activation, "residual": residual, "zero_last": True, "generator": gen}
        self.encoder = MLP(width, 2 * latent_dim, hidden_features, encoder_layers, **kw)
        self.decoder = MLP(latent_dim, 6 * self._joints, hidden_features, decoder_layers, **kw)
        if self.scale_kind == "softplus":
            with torch.no_grad():  # softplus(log(e - 1)) = 1: q(z|x) starts at the prior
                self.encoder.out.bias[latent_dim:] = math.log(math.e - 1.0)
        # rho of the per-value decoder std s = sqrt(min_std^2 + exp(2 rho)); starts at ~0.1 rad.
        self.log_std = nn.Parameter(torch.full((width,), math.log(0.1)))
        # Data statistics set by the first fit (or initialize): the encoder's input standardization
        # and the decoder's base rotation (the mean pose). Before that: identity and zero pose.
        self.register_buffer("input_loc", torch.zeros(width))
        self.register_buffer("input_scale", torch.ones(width))

    # ------------------------------------------------------------------ description
    @property
    def latent_shape(self) -> torch.Size:
        r"""The shape of one pose's latent code: :math:`(L,)`, or :math:`(H, L)` with :math:`H > 1` slots."""
        return torch.Size((self._slots, self.latent_dim) if self._slots > 1 else (self.latent_dim,))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, latent_dim={self.latent_dim}, num_samples={self.num_samples}"

    # ------------------------------------------------------------------ public API
    def log_prob(self, x: Tensor) -> Tensor:
        r"""IWAE estimate of the log-density, with :math:`K` = ``num_samples`` and the fixed ``seed``.

        Not the exact log-density (``has_exact_log_prob`` is ``False``): see the module docs.
        Deterministic and differentiable with respect to ``x`` and the parameters.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.

        Returns:
            The estimate over the :math:`D` values of the density, with shape :math:`(*)`.
        """
        return super().log_prob(x)

    def iwae(self, x: Tensor, num_samples: int | None = None, seed: int | None = None) -> Tensor:
        r"""The importance-weighted estimate of the learned values' :math:`\log p(x_L)`, any K and seed.

        ``log_prob`` is this with the defaults, plus the anatomical values and the broad component.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.
            num_samples: :math:`K`; ``None`` means ``self.num_samples``.
            seed: The seed of the draws; ``None`` means ``self.seed``.

        Returns:
            The estimate with shape :math:`(*)`.
        """
        return self._bound_of(x, "iwae", num_samples, seed)

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
        return self._bound_of(x, "elbo", num_samples, seed)

    def decode(self, z: Tensor) -> Tensor:
        r"""The decoded mean pose :math:`\mu(z)`, the values it does not learn at their training means.

        Differentiable with respect to ``z``: fitting a pose as ``decode(z)`` with the penalty
        ``z.pow(2).sum(-1)`` is how VPoser is used in SMPLify-X
        (:func:`poseprior.fitting.fit_to_joints_latent`).

        Arguments:
            z: Latent codes with shape :math:`(*, L)` (:math:`(*, H, L)` with :math:`H > 1` slots).

        Returns:
            Axis-angle poses with shape :math:`(*, J, 3)`.
        """
        ref = self.log_std
        shape = tuple(self.latent_shape)
        trailing = tuple(z.shape[z.dim() - len(shape) :]) if isinstance(z, Tensor) else ()
        if not isinstance(z, Tensor) or z.dim() < len(shape) or trailing != shape:
            got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            hint = "; with mirror=True each pose has one code per hand" if self._slots > 1 else ""
            raise ShapeError(
                f"{type(self).__name__}.decode: expected latent codes with shape "
                f"(*batch, {', '.join(map(str, shape))}), got {got}{hint}"
            )
        if z.device != ref.device or not z.is_floating_point():
            raise ValueCheckError(
                f"{type(self).__name__}.decode: expected a floating-point tensor on {ref.device}, "
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
                f"{type(self).__name__}.reconstruction_error: metric must be 'geodesic' or 'abs', "
                f"got {metric!r}"
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
        r"""The squared norm of the posterior mean, :math:`\lVert m(x) \rVert^2`, summed over slots.

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

    # ------------------------------------------------------------------ hooks
    def _log_prob(self, x: Tensor) -> Tensor:
        return self._bound(x, "iwae", self.num_samples, self.seed)

    def _training_loss(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.training and self.part_swap > 0:
            x = swap_limbs(x, self.layout, self.part_swap, generator)
        if self.training and self.noise_std > 0:
            # The encoder's input and the reconstruction target are the same noisy pose.
            x = x + self.noise_std * randn(x.shape, generator, x)
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

    def _bound_of(self, x: Tensor, kind: str, num_samples: int | None, seed: int | None) -> Tensor:
        x, batch = self._flat(x, kind)
        k = self.num_samples
        if num_samples is not None:
            k = positive_int(type(self).__name__, f"{kind} num_samples", num_samples)
        return self._bound(x, kind, k, self.seed if seed is None else seed).reshape(batch)

    def _sign(self) -> Tensor:
        """(H, 1, 3): the sign flips of each slot's frame (none here; mirrored hands override it)."""
        return torch.ones(self._slots, 1, 3, dtype=self.log_std.dtype, device=self.log_std.device)

    def _hands(self, x: Tensor) -> Tensor:
        """(N, J, 3) -> (N, H, 3 J/H): one row per slot, in the slot's frame."""
        n = x.shape[0]
        return (x.reshape(n, self._slots, self._joints, 3) * self._sign()).reshape(n, self._slots, -1)

    def _unhands(self, y: Tensor) -> Tensor:
        """(N, H, 3 J/H) -> (N, J, 3): the inverse of :meth:`_hands` (sign flips are involutions)."""
        n = y.shape[0]
        return (y.reshape(n, self._slots, self._joints, 3) * self._sign()).reshape(n, -1, 3)

    def _mask(self) -> Tensor:
        """(H, 3 J/H) bool: the learned values of each slot."""
        return self.learned.reshape(self._slots, -1)

    def _constants(self) -> Tensor:
        """(1, H, 3 J/H): the training means, in the slots' frames."""
        return self._hands(self.data_mean.to(self.log_std.dtype).reshape(1, *self.event_shape))

    def _std(self) -> Tensor:
        """(3 J/H,): the decoder's per-value standard deviation, at least ``min_std``."""
        return torch.sqrt(self.min_std**2 + torch.exp(2.0 * self.log_std))

    def _encode(self, xh: Tensor) -> tuple[Tensor, Tensor]:
        """(N, H, W) -> loc, scale (N, H, L), bounded; the values it does not learn are set to their means."""
        xe = torch.where(self._mask(), xh, self._constants())
        h = self.encoder((xe - self.input_loc) / self.input_scale)
        loc, raw = h.chunk(2, dim=-1)
        loc = bounded(loc, *LOC_RANGE)
        if self.scale_kind == "softplus":
            return loc, F.softplus(bounded(raw, *LOG_SCALE_RANGE))
        return loc, bounded(raw, *LOG_SCALE_RANGE).exp()

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
            per_slot = log_lik.mean(-1) - kl
        else:
            log_pz = -0.5 * z.pow(2).sum(-1)
            log_qz = -0.5 * eps.pow(2).sum(-1) - scale.log().sum(-1, keepdim=True)
            k = z.shape[-2]
            per_slot = torch.logsumexp(log_lik + log_pz - log_qz, dim=-1) - math.log(k)
        return per_slot.sum(-1)

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
