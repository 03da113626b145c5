r"""A VPoser-style VAE prior over body poses; its ``log_prob`` is an importance-weighted estimate.

**Model.** The VAE of :mod:`poseprior.priors._vae` (shared with
:class:`~poseprior.priors.hand_vae.HandVAEPrior`): an encoder to a Gaussian :math:`q(z \mid x)`
over a 32-d latent, a decoder to one 6D rotation per joint (converted to axis-angle), a Gaussian
likelihood with a learned per-value standard deviation floored at ``min_std``, and ``log_prob``
the IWAE estimate with :math:`K` = ``num_samples`` draws of a fixed ``seed`` (deterministic and
smooth in the pose; ``has_exact_log_prob = False``).

**VPoser's architecture by default.** The defaults reproduce the function VPoser v2
(human_body_prior) computes in eval mode: an encoder with one hidden layer of 512 (LeakyReLU), a
decoder with two (LeakyReLU), a 32-d latent and ``softplus`` posterior scales. VPoser's
BatchNorm layers are affine in eval mode and its consecutive linear layers compose into one, so
:func:`poseprior.importers.import_vposer` maps published VPoser v2 weights exactly onto this
prior (the encoder's input standardization takes VPoser's first BatchNorm). Dropout and BatchNorm
are not used here: their train/eval switch would leak into ``log_prob``.

**The latent API VPoser users rely on.** :meth:`VAEPrior.encode` returns
:math:`q(z \mid x)` as a ``torch.distributions.Normal``; :meth:`~VAEBase.decode` maps codes to
poses; :func:`poseprior.fitting.fit_to_joints_latent` fits poses to 3D joints by optimizing the
code :math:`z` with the penalty :math:`\lVert z \rVert^2` (SMPLify-X with VPoser), and
:func:`poseprior.fitting.fit_to_joints` fits the pose itself with :meth:`penalty` (the IWAE
estimate of :math:`-\log p`).

**Training.** ``fit`` (Adam on the negative ELBO, or the IWAE bound with ``objective="iwae"``,
of the training poses plus Gaussian noise of ``noise_std`` = 0.1 rad) and the Lightning trainer
minimize the same ``training_loss``; the first ``fit`` sets the
encoder's input standardization and the decoder's base pose (the training mean) from the data.

References:
    Pavlakos et al., *Expressive Body Capture: 3D Hands, Face, and Body from a Single Image*
    (VPoser), CVPR 2019.
    Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..formats.layouts import JointLayout
from ..nn.mlp import Activation
from ..registry import register_prior
from ._vae import Objective, VAEBase

__all__ = ["VAEPrior"]


@register_prior("vae")
class VAEPrior(VAEBase):
    r"""Creates a VPoser-style VAE prior whose ``log_prob`` is an IWAE estimate.

    See the module documentation for the model and :mod:`poseprior.priors._vae` for the estimate,
    its determinism and the bounded encoder.

    Arguments:
        layout: The joints modelled (default ``"body"``: VPoser's 21 joints, 63 values).
        latent_dim: The latent size :math:`L`.
        hidden_features: The width of the encoder and decoder MLPs.
        encoder_layers: The number of hidden layers of the encoder.
        decoder_layers: The number of hidden layers of the decoder.
        activation: The MLPs' activation (VPoser: ``"leaky_relu"``, slope 0.01).
        residual: Skip connections between hidden layers (VPoser has none).
        num_samples: :math:`K`, the number of importance samples of :meth:`log_prob`.
        min_std: Floor (radians) of the decoder's per-value standard deviation.
        objective: The training objective: ``"elbo"`` or ``"iwae"`` (with ``train_samples``).
        train_samples: The number of latent draws per pose in the training objective.
        seed: The seed of the initial weights and of the per-call generator of the IWAE draws.
        noise_std: Standard deviation (radians) of the Gaussian noise ``fit`` adds to training
            poses (see :mod:`poseprior.priors._vae`); evaluation is not noisy.
        part_swap: Probability that a training pose, in each epoch, gets one limb from another
            pose of its batch (:func:`~poseprior.formats.swap_limbs`); 0 disables it.
        exclude: See :class:`~poseprior.PosePrior`.
        anatomical: See :class:`~poseprior.PosePrior`.
        broad_weight: See :class:`~poseprior.PosePrior` (the broad component).
        broad_scale: See :class:`~poseprior.PosePrior`.

    The training noise (0.1 rad) and the broad component (weight 0.02, scale 1.5) were chosen on
    motion the prior was not trained on (``benchmarks/tune_defaults.py``): without the noise, the
    VAE alone did worse than independent per-value Gaussians on unseen subjects (see
    ``docs/priors/vae.md``).

    Example:
        >>> prior = VAEPrior(latent_dim=8, hidden_features=32)
        >>> prior.encode(torch.zeros(4, 21, 3)).loc.shape
        torch.Size([4, 8])
        >>> prior.decode(torch.zeros(4, 8)).shape
        torch.Size([4, 21, 3])
    """

    default_layout = "body"
    scale_kind = "softplus"
    fit_defaults = {"epochs": 20, "batch_size": 256, "lr": 1e-3, "weight_decay": 0.0, "patience": 10}
    """Adam (:func:`~poseprior._fitloop.fit_adam`) on ``training_loss``: 20 epochs of batches of 256,
    lr 1e-3 (cosine), patience 10 (with ``val=``); the latent draws come from fit's ``generator``.
    On the CMU sample 100 epochs over-fit badly (val NLL without the broad component +5.7 against
    -53.8 after 20; see ``docs/priors/vae.md``); give ``val=`` poses to stop early instead."""

    def __init__(
        self,
        layout: str | JointLayout = "body",
        latent_dim: int = 32,
        hidden_features: int = 512,
        encoder_layers: int = 1,
        decoder_layers: int = 2,
        activation: Activation = "leaky_relu",
        residual: bool = False,
        num_samples: int = 64,
        min_std: float = 0.02,
        objective: Objective = "elbo",
        train_samples: int = 1,
        seed: int = 0,
        noise_std: float = 0.1,
        part_swap: float = 0.0,
        *,
        exclude: Sequence[int] | None = None,
        anatomical: Sequence[int] | None = None,
        broad_weight: float = 0.02,
        broad_scale: float = 1.5,
    ) -> None:
        super().__init__(layout, min_std=min_std, exclude=exclude, anatomical=anatomical,
                         broad_weight=broad_weight, broad_scale=broad_scale)
        if not isinstance(residual, bool):
            raise ValueError(f"VAEPrior: residual must be a bool, got {residual!r}")
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.activation = activation
        self.residual = residual
        self._build(
            latent_dim=latent_dim, hidden_features=hidden_features, encoder_layers=encoder_layers,
            decoder_layers=decoder_layers, num_samples=num_samples, objective=objective,
            train_samples=train_samples, seed=seed, activation=activation, residual=residual,
            noise_std=noise_std, part_swap=part_swap,
        )

    def encode(self, x: Tensor) -> torch.distributions.Normal:
        r"""The approximate posterior :math:`q(z \mid x)` of poses ``x`` (VPoser's ``encode``).

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.

        Returns:
            A ``torch.distributions.Normal`` with batch shape :math:`(*, L)`; its ``loc`` and
            ``scale`` are differentiable with respect to ``x``.
        """
        x, batch = self._flat(x, "encode")
        loc, scale = self._encode(self._hands(x))
        shape = (*batch, self.latent_dim)
        return torch.distributions.Normal(loc.reshape(shape), scale.reshape(shape), validate_args=False)
