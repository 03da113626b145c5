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

**Bounded encoder.** The encoder's mean and log-scale are the identity on the ranges trained
encoders use and saturate smoothly beyond (:mod:`poseprior.priors._vae`), so ``log_prob``, its
gradient and Hessian-vector products stay finite for any finite pose (tested up to 50 rad).
The machinery (encoder, decoder, bounds, estimate, training loss) is shared with the body
:class:`~poseprior.priors.vae.VAEPrior`.

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

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ..errors import ShapeError
from ..formats import adapters
from ..formats.layouts import HAND_JOINT_NAMES, JointLayout
from ..registry import register_prior
from ..synthetic import synthetic_hand_poses
from ._vae import Objective, VAEBase, positive_int

__all__ = ["HandVAEPrior", "synthetic_hand_poses"]

HandConvention = Literal["flat", "mean_relative"]

_LEFT = tuple(f"left_{j}" for j in HAND_JOINT_NAMES)
_RIGHT = tuple(f"right_{j}" for j in HAND_JOINT_NAMES)
_HAND_LAYOUTS = {_LEFT: "left", _RIGHT: "right", _LEFT + _RIGHT: "both"}


@register_prior("hand_vae")
class HandVAEPrior(VAEBase):
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
        seed: The seed of the initial weights and of the per-call generator of the IWAE draws (see the
            module docs).
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
        self.num_layers = positive_int("HandVAEPrior", "num_layers", num_layers)
        if hand_convention not in ("flat", "mean_relative"):
            raise ValueError(
                f"HandVAEPrior: hand_convention must be 'flat' or 'mean_relative', got {hand_convention!r}"
            )
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
        self._build(
            latent_dim=latent_dim, hidden_features=hidden_features, encoder_layers=num_layers,
            decoder_layers=num_layers, num_samples=num_samples, objective=objective,
            train_samples=train_samples, seed=seed, slots=2 if mirror else 1,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mirror={self.mirror}, hand_convention={self.hand_convention!r}"

    # ------------------------------------------------------------------ public API
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
    def upgrade_checkpoint(
        cls, version: int, config: dict[str, Any], state: dict[str, Tensor]
    ) -> tuple[dict, dict]:
        """Version 1 had its own ``stats_initialized`` flag; it is the base class's ``initialized`` now."""
        config, state = super().upgrade_checkpoint(version, config, state)
        state = dict(state)
        state["initialized"] = state.pop("stats_initialized")
        return config, state

    # ------------------------------------------------------------------ internals
    def _sign(self) -> Tensor:
        """(H, 1, 3): the mirroring of each hand slot (the right hand's with ``mirror``)."""
        sign = super()._sign()
        if self.mirror:
            sign[1, 0, 1:] = -1.0  # mirror_hand: (a, b, c) -> (a, -b, -c)
        return sign

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
