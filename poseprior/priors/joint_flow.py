r"""The per-joint conditional flow prior: one small spline flow per joint along the kinematic tree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_number, check_probability
from .._rng import randn
from ..base import PosePrior
from ..formats.adapters import swap_limbs
from ..formats.layouts import JointLayout
from ..formats.rotations import axis_angle_to_rot6d
from ..nn.joint_net import StackedMLP, identity_spline_params, rq_spline, spline_param_count
from ..registry import register_prior

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_CTX = 6  # the parent's rotation in the 6D representation


@register_prior("joint_flow")
class JointFlowPrior(PosePrior):
    r"""Creates a prior that factorizes the pose along the kinematic tree.

    .. math::
        p(\theta) = \prod_j p(\theta_j \mid R_{\mathrm{parent}(j)}), \qquad
        p(\theta_j \mid R) = \prod_{k} p(\theta_{jk} \mid \theta_{j,<k}, R)

    Every joint's three axis-angle values are modelled autoregressively *within the joint*, each
    value :math:`\theta_{jk}` by a one-dimensional flow: a fixed standardization
    :math:`u = (\theta_{jk} - \mu_{jk}) / \sigma_{jk}`, then a monotone rational-quadratic spline
    :math:`z = f(u)` on :math:`[-B, B]` (identity outside), then a standard normal base. The
    spline's parameters come from a small MLP of that value alone (one MLP per learned value),
    whose input is the parent joint's rotation in the 6D representation (zeros for a joint without
    a parent in the layout) and the joint's own standardized values of the axes before :math:`k`.
    The density is exact:

    .. math::
        \log p(\theta_L) = \sum_{(j,k)\ \mathrm{learned}}
        \log \mathcal{N}(f(u_{jk}); 0, 1) + \log |f'(u_{jk})| - \log \sigma_{jk}.

    **Why this design.** One-dimensional flows make every factor exact and invertible in closed
    form; a value it does not learn (anatomical or excluded) only drops its term (its conditioner
    inputs hold its training mean; the base class adds the anatomical values' own Gaussians). All
    :math:`D` MLPs are evaluated together, one batched matrix product per layer
    (:class:`~poseprior.nn.joint_net.StackedMLP`), never a Python loop over networks; sampling goes
    one tree depth at a time, three axis passes per depth, over the joints of that depth only.
    The parent's rotation enters as a continuous 6D rotation so that the context is a smooth,
    bounded function of the parent's pose for any angle; it is standardized with the data's
    per-joint mean and standard deviation (floored at ``min_std``) and clamped to :math:`[-B, B]`,
    because most joints move over a small part of SO(3), where the raw 6D entries barely vary
    (this gains about a nat per pose over the raw 6D input).

    **Variance floor.** The standardization scale is :math:`\max(\mathrm{std}, \mathrm{min\_std})`
    and, during training, Gaussian noise of standard deviation ``min_std`` radians is added to the
    poses (:meth:`training_loss` in train mode). The floor on the scale alone would not stop the
    spline from learning a needle at a near-constant value (or along a line, e.g. a knee that
    rotates about one fixed oblique axis); the noise does: the model is fitted to the data
    convolved with :math:`\mathcal{N}(0, \mathrm{min\_std}^2)`, so a pose 2 degrees off a
    direction the data never moves along costs about
    :math:`\frac12 (0.035 / \mathrm{min\_std})^2` nats. The default 0.02 rad, the limb swaps
    (``part_swap=0.5``) and the broad component (weight 0.02, scale 1.5) were chosen on unseen
    subjects and on another source (``benchmarks/tune_defaults.py``, ``docs/generalization.md``);
    ``fit`` also trains on the mirror images of the poses.

    **Numerics.** The spline is the identity outside :math:`[-B, B]` standardized units (the
    ``tail_bound``), and every conditioner input is clamped to :math:`[-B, B]`, so ``log_prob``
    and its gradients are finite for any accepted pose, and far outside the data the density is
    the Gaussian tail of the standardization: log p falls along every ray away from the data, and
    samples stay within a few standard deviations of it.

    Arguments:
        layout: The joints modelled; the factorization follows ``layout.parents``.
        num_bins: The number of spline bins :math:`K`.
        hidden: The hidden width of every MLP.
        layers: The number of hidden layers of every MLP.
        min_std: Floor of the standardization scale and standard deviation of the training noise,
            in radians.
        tail_bound: :math:`B`, in standardized units.
        seed: Seed of the initial weights (a local generator: the global RNG is not used).
        part_swap: Probability that a training pose, in each epoch, gets one limb from another
            pose of its batch (:func:`~poseprior.formats.swap_limbs`); 0 disables it. The default
            0.5 was chosen like the others (``docs/generalization.md``): about 1 nat better on
            unseen subjects, the same on val.
        exclude: See :class:`~poseprior.PosePrior`.
        anatomical: See :class:`~poseprior.PosePrior`.
        broad_weight: See :class:`~poseprior.PosePrior` (the broad component).
        broad_scale: See :class:`~poseprior.PosePrior`.

    Example:
        >>> prior = JointFlowPrior("body")
        >>> prior.sample((2,), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 21, 3])
    """

    version = 3  # 3: part_swap in the config (see upgrade_checkpoint)
    fit_defaults = {"epochs": 30, "batch_size": 256, "lr": 2e-3, "weight_decay": 1e-4, "patience": 8}
    """Adam (:func:`~poseprior._fitloop.fit_adam`) with noise of std ``min_std``: 30 epochs of batches
    of 256, learning rate 2e-3 with cosine decay, AdamW weight decay 1e-4; with ``val`` poses,
    training stops after ``patience`` epochs without improvement and keeps the best parameters."""

    chunk_size: int = 256
    """Poses per chunk in ``log_prob`` and ``sample``: a batch is evaluated in chunks of this many
    poses (all joints at once in each), which keeps the intermediates in cache; on CPU a single
    pass over 4096 poses is about half as fast (large fresh buffers cost page faults)."""

    sample_chunk_size: int = 2048
    """Poses per chunk in ``sample``: every pass of the sampler touches only the values of one
    depth and axis, so larger chunks than in ``log_prob`` stay in cache and amortize the Python
    overhead of the passes."""

    def __init__(
        self,
        layout: str | JointLayout = "body",
        num_bins: int = 8,
        hidden: int = 75,
        layers: int = 2,
        min_std: float = 0.02,
        tail_bound: float = 5.0,
        seed: int = 0,
        part_swap: float = 0.5,
        *,
        exclude: Sequence[int] | None = None,
        anatomical: Sequence[int] | None = None,
        broad_weight: float = 0.02,
        broad_scale: float = 1.5,
    ) -> None:
        super().__init__(
            layout,
            min_std=min_std,
            exclude=exclude,
            anatomical=anatomical,
            broad_weight=broad_weight,
            broad_scale=broad_scale,
        )
        if num_bins < 2 or hidden < 1 or layers < 1:
            raise ValueError(
                f"num_bins >= 2, hidden >= 1 and layers >= 1 are needed, got {num_bins}, {hidden}, {layers}"
            )
        self.num_bins = int(num_bins)
        self.hidden = int(hidden)
        self.layers = int(layers)
        self.tail_bound = check_number("tail_bound", tail_bound)
        self.part_swap = check_probability("part_swap", part_swap)
        self.seed = int(seed)
        j = len(self.layout)
        self.register_buffer("loc", torch.zeros(j, 3))
        self.register_buffer("scale", torch.ones(j, 3))
        self.register_buffer("ctx_loc", torch.zeros(j + 1, _CTX, 1))
        self.register_buffer("ctx_scale", torch.ones(j + 1, _CTX, 1))
        self._rebuild()

    @classmethod
    def upgrade_checkpoint(
        cls, version: int, config: dict[str, Any], state: dict[str, Tensor]
    ) -> tuple[dict, dict]:
        """Version 1 had its own ``standardized`` flag (the base class's ``initialized`` now); versions
        1 and 2 were trained without limb swaps (``part_swap=0``, which the config did not record)."""
        if version != 2:  # version 1 (the base class refuses any other)
            config, state = super().upgrade_checkpoint(version, config, state)
            state = dict(state)
            state["initialized"] = state.pop("standardized")
        return {**config, "part_swap": 0.0}, state

    # ------------------------------------------------------------------ structure
    def _rebuild(self) -> None:
        r"""Builds the :math:`D` conditioners and the index tables of the modelled values."""
        ref = self.data_mean
        j = len(self.layout)
        learned = self.learned.cpu()
        flat = learned.nonzero().flatten()  # (D,) flat index 3 * joint + axis, in tree order
        joint, axis = flat // 3, flat % 3
        parents = torch.tensor(self.layout.parents, dtype=torch.long)
        parent = torch.where(parents[joint] >= 0, parents[joint], torch.full_like(joint, j))
        # Own-value inputs: axes before k, and only the learned ones (the others are held at their means).
        own = (torch.arange(3).unsqueeze(0) < axis.unsqueeze(1)) & learned.reshape(j, 3)[joint]
        input_mask = torch.cat([torch.ones(len(flat), _CTX, dtype=torch.bool), own], dim=1)
        # Sampling order: by depth, then axis; a group is one (depth, axis) pass.
        depth = torch.tensor(self.layout.depths(), dtype=torch.long)[joint]
        key = depth * 3 + axis
        order = torch.argsort(key, stable=True)
        bounds = torch.unique_consecutive(key[order], return_counts=True)[1].cumsum(0).tolist()
        self._groups = list(zip([0, *bounds[:-1]], bounds, strict=False))
        for name, value in (
            ("value_flat", flat),
            ("value_joint", joint),
            ("value_parent", parent),
            ("sample_order", order),
            ("value_depth", depth),
        ):
            self.register_buffer(name, value.to(ref.device), persistent=False)  # derived from `learned`
        self.net = StackedMLP(
            len(flat),
            _CTX + 3,
            self.hidden,
            self.layers,
            spline_param_count(self.num_bins),
            input_mask=input_mask,
            out_init=identity_spline_params(self.num_bins),
            generator=torch.Generator().manual_seed(self.seed),
        ).to(device=ref.device, dtype=ref.dtype)

    # ------------------------------------------------------------------ helpers
    def _standardize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, J, 3) -> the pose with the values it does not learn at their means, and its standardization."""
        const = self.data_mean.reshape(-1, 3).to(x.dtype)
        x = torch.where(self.learned_mask, x, const)
        return x, (x - self.loc) / self.scale

    def _standardize_context(self, r6: Tensor, joints: Tensor | slice) -> Tensor:
        """Standardizes 6D rotations (M, 6, N) of ``joints`` with the data's statistics, clamped to +-B."""
        out = (r6 - self.ctx_loc[joints]) / self.ctx_scale[joints]
        return out.clamp(-self.tail_bound, self.tail_bound)

    def _conditioner_input(self, x: Tensor, u: Tensor) -> Tensor:
        """Inputs (D, 9, N) of all conditioners, feature-major: parent's 6D rotation, own values."""
        r6 = axis_angle_to_rot6d(x).permute(1, 2, 0)  # (J, 6, N)
        ctx = torch.cat([r6, r6.new_zeros(1, *r6.shape[1:])], dim=0)  # row J: 'no parent'
        ctx = self._standardize_context(ctx, slice(None))
        own = u.clamp(-self.tail_bound, self.tail_bound).permute(1, 2, 0)  # (J, 3, N)
        return torch.cat([ctx[self.value_parent], own[self.value_joint]], dim=1)

    def spline_params(self, x: Tensor) -> Tensor:
        r"""The spline parameters of every modelled value, given poses with shape :math:`(N, J, 3)`.

        Returns:
            Unconstrained parameters with shape :math:`(D, 3K - 1, N)` (see
            :func:`~poseprior.nn.joint_net.rq_spline` with ``dim=-2``), in the order of the
            modelled values.
        """
        x, u = self._standardize(x)
        return self.net(self._conditioner_input(x, u))

    def _value_log_prob(self, x: Tensor) -> Tensor:
        """(N, J, 3) -> (D, N): the log-density term of every modelled value."""
        if x.shape[0] > self.chunk_size:
            return torch.cat([self._value_log_prob(c) for c in x.split(self.chunk_size)], dim=1)
        x, u = self._standardize(x)
        params = self.net(self._conditioner_input(x, u))
        u_m = u.reshape(u.shape[0], -1).T[self.value_flat]  # (D, N)
        z, logdet = rq_spline(u_m, params, tail_bound=self.tail_bound, dim=-2)
        log_scale = self.scale.reshape(-1)[self.value_flat].log().unsqueeze(1)
        return -0.5 * z * z - _LOG_SQRT_2PI + logdet - log_scale

    # ------------------------------------------------------------------ hooks
    def _log_prob(self, x: Tensor) -> Tensor:
        return torch.cat([self._value_log_prob(c).sum(0) for c in x.split(self.chunk_size)])

    def log_prob_per_joint(self, x: Tensor) -> Tensor:
        r"""The per-joint factors :math:`\log p(\theta_j \mid R_{\mathrm{parent}(j)})`.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.

        Returns:
            The log-density of every joint with shape :math:`(*, J)`; it sums to the flow's
            log-density of the learned values over the last axis (:meth:`log_prob` adds the
            anatomical values' terms and, with a broad component, is the mixture's). A joint
            with no learned value has a term of 0.
        """
        x = self._check(x, "log_prob_per_joint")
        batch = x.shape[:-2]
        terms = self._value_log_prob(x.reshape(-1, *self.event_shape))
        out = terms.new_zeros(len(self.layout), terms.shape[1]).index_add_(0, self.value_joint, terms)
        return out.T.reshape(*batch, len(self.layout))

    def _inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        r"""Maps base values with shape :math:`(N, D)` to poses :math:`(N, J, 3)` and their log-density.

        Ancestral: one pass per (tree depth, axis), each over the values of that depth and axis
        only; when a depth starts, the parents of its joints are complete.
        """
        passes = []
        for start, stop in self._groups:
            values = self.sample_order[start:stop]
            # Tables and weights of this pass, gathered once for all chunks.
            passes.append(
                (
                    values,
                    self.value_joint[values],
                    self.value_parent[values] if int(self.value_depth[values[0]]) > 0 else None,
                    self.value_flat[values],
                    self.net.subset(values),
                )
            )
        loc, scale = self.loc.reshape(-1).to(z.dtype), self.scale.reshape(-1).to(z.dtype)
        log_scale = scale[self.value_flat].log().sum()
        xs, lps = [], []
        for zc in z.split(self.sample_chunk_size):
            n, j = zc.shape[0], len(self.layout)
            u = zc.new_zeros(n, j, 3)
            x = self.data_mean.to(zc.dtype).expand(n, -1).reshape(n, j, 3).clone()
            log_prob = (-0.5 * zc * zc - _LOG_SQRT_2PI).sum(1) - log_scale
            zt = zc.T
            for values, joint, parent, flat, layers in passes:
                if parent is None:  # joints without a parent: the context is zeros
                    ctx = zc.new_zeros(len(values), _CTX, n)
                else:
                    r6 = axis_angle_to_rot6d(x[:, parent]).permute(1, 2, 0)  # parents are complete
                    ctx = self._standardize_context(r6, parent)
                own = u[:, joint].clamp(-self.tail_bound, self.tail_bound).permute(1, 2, 0)
                params = self.net.apply(layers, torch.cat([ctx, own], dim=1))
                u_v, logdet = rq_spline(zt[values], params, tail_bound=self.tail_bound, inverse=True, dim=-2)
                u_v = u_v.T
                u.view(n, -1)[:, flat] = u_v
                x.view(n, -1)[:, flat] = loc[flat] + scale[flat] * u_v
                log_prob = log_prob - logdet.sum(0)  # logdet of the inverse: log p gets -log|du/dz|
            xs.append(x)
            lps.append(log_prob)
        return torch.cat(xs), torch.cat(lps)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self._inverse(randn((n, self.model_dim), generator, self.data_mean))[0]

    def _sample_and_log_prob(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        return self._inverse(randn((n, self.model_dim), generator, self.data_mean))

    def _training_loss(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """-log p of the poses plus Gaussian noise of std ``min_std`` in train mode (the variance floor)."""
        if self.training:
            if self.part_swap > 0:
                x = swap_limbs(x, self.layout, self.part_swap, generator)
            x = x + self.min_std * randn(x.shape, generator, x)
        return -self._log_prob(x).mean()

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        """Fits the standardizations of the values and of the 6D contexts: mean and max(std, min_std).

        Values it does not learn get loc = their mean and scale = 1 (their standardized value is 0).
        """
        mean, std = x.mean(0), x.std(0)
        mask = self.learned_mask
        self.loc.copy_(torch.where(mask, mean, self.data_mean.reshape(-1, 3).to(mean)))
        self.scale.copy_(torch.where(mask, std.clamp_min(self.min_std), torch.ones_like(std)))
        x_eff = torch.where(mask, x, self.data_mean.reshape(-1, 3).to(x))
        r6 = axis_angle_to_rot6d(x_eff)  # (N, J, 6)
        self.ctx_loc[:-1, :, 0] = r6.mean(0)
        self.ctx_scale[:-1, :, 0] = r6.std(0).clamp_min(self.min_std)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.num_bins}, hidden={self.hidden}, layers={self.layers}"
