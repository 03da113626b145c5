r"""The global flow prior: one normalizing flow over every learned value of the pose."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import check_number, check_probability
from .._rng import randn
from ..base import PosePrior
from ..formats.adapters import swap_limbs
from ..formats.layouts import JointLayout
from ..nn.flows import build_flow
from ..nn.fused import FusedMAFDensity, FusedParts, fused_maf_log_prob
from ..registry import register_prior

_REQUIRES_GRAD = operator.attrgetter("requires_grad")
_VERSION = operator.attrgetter("_version")  # bumped by every in-place change (optimizer steps, copy_)
_DATA_PTR = torch.Tensor.data_ptr  # changes with .to(), .double(), `.data =` (unbound: cheaper to map)

# Whether a torch.func transform (grad, vmap, ...) is running: a private torch function, so a torch
# without it is treated as "never" (the fused path's autograd.Function then raises under torch.func).
_functorch_active: Callable[[], bool] = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


@register_prior("global_flow")
class GlobalFlowPrior(PosePrior):
    r"""Creates a normalizing-flow prior over all learned axis-angle values jointly.

    .. math::
        \log p(x_L) = \log \mathcal{N}\big(f(y) \mid 0, I\big)
        + \log \big|\det \partial f / \partial y\big| + \log |\det W|,
        \qquad y = W (x_L - \mu)

    :math:`f` is ``blocks`` times ActNorm -> affine MAF (or coupling) layer -> fixed permutation,
    built with ``nflows.transforms`` (see :mod:`poseprior.nn.flows`), so the density captures
    correlations between all joints. The default is 3 blocks, each MADE with one residual block of
    width 128 (about 147K parameters for the 41 learned values of the bundled data). The anatomical
    values and the broad component are the base class's (see :class:`~poseprior.PosePrior`).

    **Built to stay right away from its data** (``docs/generalization.md`` has the measurements):

    - *Training noise*: Gaussian noise of standard deviation ``noise_std`` radians (default
      0.08, chosen on unseen subjects and on another source, see the docs) is added to the poses,
      so the flow learns the data convolved with :math:`\mathcal{N}(0, \mathrm{noise\_std}^2 I)`:
      every direction, axis-aligned or not (a knee that only flexes about one axis), keeps a spread
      of at least ``noise_std``, and motion the capture system or the retargeting never produced
      costs a few nats, not thousands. ``fit`` also trains on the mirror images of the poses.
    - *Limb swaps*: each training pose, with probability ``part_swap`` (default 1) in each epoch,
      gets one limb (a leg, an arm, the spine, neck and head) from another pose of its batch
      (:func:`~poseprior.formats.swap_limbs`), so the flow also learns each limb in combinations
      the training subjects never showed: on subjects and on a source it was not trained on it
      scores 2-3 nats better, in distribution 4 nats worse (chosen by the same rule as the other
      defaults, ``docs/generalization.md``).
    - *Bounded layers*: each layer's log-scale is soft-clamped to :math:`\pm` ``max_log_scale``
      (default 0.9), and the MADEs see their inputs soft-clamped to :math:`\pm` ``conditioner_bound``
      standard units (default 2), so every layer's scale and shift are bounded functions of the
      pose. Far from the data each layer is an affine map with bounded coefficients: the density
      has Gaussian tails (log p falls along every ray away from the data), ``log_prob`` and its
      gradients stay finite for any accepted pose, and sampling cannot run away (the unbounded
      version put samples at 1e9 rad).
    - *Grouped autoregression*: with ``groups`` G (default 8) each layer's values are split into G
      consecutive groups and a group depends only on the groups before it (the permutations
      between blocks mix them), so sampling inverts a layer in G network passes instead of one per
      learned value.

    **Standardization and initialization.** ``requires_initialization = True``: :meth:`initialize`
    (called by :meth:`fit` when needed) fits the fixed standardization :math:`\mu, W` (buffers) and
    then initializes every ActNorm layer on the activations that reach it. With
    ``standardize="diagonal"`` (the default), :math:`W` is diagonal with the inverse per-value
    standard deviations of the training poses plus the training noise,
    :math:`\max(\sqrt{\mathrm{var}_i + \mathrm{noise\_std}^2}, \mathrm{min\_std})`; with
    ``"full"``, :math:`W = L^{-1}` where :math:`L L^\top` is their covariance plus
    ``noise_std**2 * I`` with eigenvalues floored at ``min_std**2`` (whitening). The ActNorm layers
    are initialized on poses with the training noise (drawn from a generator seeded with
    ``seed``), so the initialization does not undo the floor. ``log_prob`` and ``sample`` raise
    :class:`~poseprior.NotInitializedError` before initialization; the flow never initializes
    itself.

    **Speed.** The density is one pass (exact ``log_prob``); sampling inverts each MAF layer with
    ``groups`` passes (one per learned value with ``groups=None``; ``"coupling"`` samples in one
    pass). :meth:`compile` opts in to ``torch.compile`` for the density path.

    **As a regularizer, freeze it**: ``prior.requires_grad_(False)``, then use ``log_prob`` or
    ``penalty`` in your own loss as usual. With ``transform="maf"``, a frozen prior (or any prior
    under ``no_grad``) evaluates a fused copy of the density (:mod:`poseprior.nn.fused`:
    standardization and ActNorms folded into the MADE weights, permutations folded away, the broad
    component and the anatomical values in the same pass, a hand-written pose gradient, one
    autograd node), rebuilt automatically after any change of a weight or buffer made through
    tensor operations (optimizer steps, ``copy_``, ``load_state_dict``, ``.to()``; in-place writes
    through ``.data`` are invisible to version counters, here as in autograd). It is the same
    density (equal to float rounding); ``create_graph=True`` and ``torch.func`` fall back to the
    module path, so higher derivatives stay exact.

    Arguments:
        layout: The joints modelled (see :class:`~poseprior.PosePrior`).
        blocks: Number of ActNorm/transform/permutation blocks.
        hidden_features: Width of each MADE (or coupling) network.
        residual_blocks: Residual blocks in each network.
        transform: ``"maf"`` (masked affine autoregressive) or ``"coupling"`` (affine RealNVP).
        permutation: ``"random"`` (from a generator seeded with ``seed``) or ``"reverse"``.
        standardize: ``"diagonal"`` (per-value scales) or ``"full"`` (whitening by the floored
            covariance).
        seed: Seed of the permutations, of the initial weights and of the initialization noise
            (local generators: the global RNG state is left as it was).
        min_std: Floor of the standardization's standard deviations, in radians.
        noise_std: Standard deviation (radians) of the Gaussian noise added to training poses;
            0 disables it (the learned density then has no floor: a 2-degree step off a learned
            near-constant direction can cost over 100 nats).
        max_log_scale: Bound of the per-layer log-scale.
        actnorm_eps: Epsilon added to the variance when an ActNorm layer is initialized.
        conditioner_bound: With ``transform="maf"``: the MADEs see their input soft-clamped to
            :math:`\pm` this many standard units (``None``: unclamped), so every layer's scale and
            shift are bounded functions of the pose.
        groups: With ``transform="maf"``: grouped autoregression in this many groups per layer
            (``None``: one value per group); sampling takes ``groups`` network passes per layer
            instead of one per learned value.
        part_swap: Probability that a training pose, in each epoch, gets one limb from another
            pose of its batch (:func:`~poseprior.formats.swap_limbs`): the flow learns limbs in
            combinations the training subjects did not show (1: every pose, in each epoch). 0
            disables it.
        exclude: See :class:`~poseprior.PosePrior`.
        anatomical: See :class:`~poseprior.PosePrior`.
        broad_weight: See :class:`~poseprior.PosePrior` (the broad component).
        broad_scale: See :class:`~poseprior.PosePrior`.

    The defaults (``hidden_features=128``, ``noise_std=0.08``, ``max_log_scale=0.9``,
    ``conditioner_bound=2``, ``groups=8``, ``part_swap=1``, a broad component of weight 0.05 and scale 1) were
    chosen on motion the prior was not trained on, under the constraint of honest tails
    (``benchmarks/tune_defaults.py``, ``docs/generalization.md``).

    Example:
        >>> prior = GlobalFlowPrior("left_hand", blocks=1, hidden_features=8)
        >>> x = 0.1 * torch.randn(100, 15, 3, generator=torch.Generator().manual_seed(0))
        >>> prior.initialize(x)
        >>> prior.log_prob(x[:2]).shape
        torch.Size([2])
    """

    requires_initialization = True
    version = 3  # 3: part_swap in the config (see upgrade_checkpoint)
    fit_defaults = {"epochs": 20, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4, "patience": 5}
    r"""Adam (:func:`~poseprior._fitloop.fit_adam`) on :math:`-\log p` of noisy poses: 20 epochs (cosine
    learning-rate decay), batch 256, lr 1e-3, weight decay 1e-4, patience 5 (with ``val=``); the
    ``generator`` drives the shuffling, the training noise and the limb swaps."""
    _fused_sources: tuple | None = None  # (flow, dicts, names): where the fused density's tensors live
    _fused_cache: tuple | None = None  # (key, tensors, FusedMAFDensity, FusedParts)
    _compiled_fused: Callable | None = None  # torch.compile(fused_maf_log_prob), see compile()

    def __init__(
        self,
        layout: str | JointLayout = "body",
        blocks: int = 3,
        hidden_features: int = 128,
        residual_blocks: int = 1,
        transform: Literal["maf", "coupling"] = "maf",
        permutation: Literal["random", "reverse"] = "random",
        standardize: Literal["diagonal", "full"] = "diagonal",
        seed: int = 0,
        min_std: float = 0.02,
        noise_std: float = 0.08,
        max_log_scale: float = 0.9,
        actnorm_eps: float = 1e-4,
        conditioner_bound: float | None = 2.0,
        groups: int | None = 8,
        part_swap: float = 1.0,
        *,
        exclude: Sequence[int] | None = None,
        anatomical: Sequence[int] | None = None,
        broad_weight: float = 0.05,
        broad_scale: float = 1.0,
    ) -> None:
        super().__init__(
            layout,
            min_std=min_std,
            exclude=exclude,
            anatomical=anatomical,
            broad_weight=broad_weight,
            broad_scale=broad_scale,
        )
        self.blocks = int(blocks)
        self.hidden_features = int(hidden_features)
        self.residual_blocks = int(residual_blocks)
        self.transform = transform
        self.permutation = permutation
        if standardize not in ("full", "diagonal"):
            raise ValueError(f"standardize must be 'full' or 'diagonal', got {standardize!r}")
        self.standardize = standardize
        self.seed = int(seed)
        self.noise_std = check_number("noise_std", noise_std, strict=False)
        self.max_log_scale = check_number("max_log_scale", max_log_scale)
        self.actnorm_eps = check_number("actnorm_eps", actnorm_eps)
        self.conditioner_bound = (
            None if conditioner_bound is None else check_number("conditioner_bound", conditioner_bound)
        )
        if groups is not None and (not isinstance(groups, int) or isinstance(groups, bool) or groups < 2):
            raise ValueError(f"groups must be an int >= 2 or None, got {groups!r}")
        self.groups = groups
        self.part_swap = check_probability("part_swap", part_swap)
        self._compiled: Callable[[Tensor], Tensor] | None = None
        self._compile_options: dict[str, Any] | None = None
        self._rebuild()

    @classmethod
    def upgrade_checkpoint(
        cls, version: int, config: dict[str, Any], state: dict[str, Tensor]
    ) -> tuple[dict, dict]:
        """Version 1 had no conditioner bound and one value per autoregressive group; versions 1
        and 2 were trained without limb swaps (``part_swap=0``, which the config did not record)."""
        if version != 2:  # version 1 (the base class refuses any other)
            config, state = super().upgrade_checkpoint(version, config, state)
            config = {**config, "conditioner_bound": None, "groups": None}
        return {**config, "part_swap": 0.0}, state

    def _rebuild(self) -> None:
        d = self.model_dim
        ref = self.data_mean
        self.register_buffer("loc", torch.zeros(d, dtype=ref.dtype, device=ref.device))
        # y = (x - loc) @ whiten.T; whiten is lower-triangular (diagonal for "diagonal").
        self.register_buffer("whiten", torch.eye(d, dtype=ref.dtype, device=ref.device))
        self.flow = build_flow(
            d,
            blocks=self.blocks,
            hidden_features=self.hidden_features,
            residual_blocks=self.residual_blocks,
            transform=self.transform,
            permutation=self.permutation,
            seed=self.seed,
            max_log_scale=self.max_log_scale,
            actnorm_eps=self.actnorm_eps,
            input_bound=self.conditioner_bound if self.transform == "maf" else None,
            groups=self.groups if self.transform == "maf" else None,
        ).to(dtype=ref.dtype, device=ref.device)
        if self._compile_options is not None:  # a fresh graph for the new modules
            self._compiled = torch.compile(type(self)._density, **self._compile_options)

    # ------------------------------------------------------------------ hooks
    def _initialize(self, x: Tensor) -> None:
        v = self._select(x).double()
        mean = v.mean(0)
        centred = v - mean
        noise_var = self.noise_std**2
        if self.standardize == "full":
            eye = torch.eye(self.model_dim, dtype=v.dtype, device=v.device)
            cov = centred.T @ centred / v.shape[0] + noise_var * eye
            evals, evecs = torch.linalg.eigh(cov)
            cov = (evecs * evals.clamp_min(self.min_std**2)) @ evecs.T
            tril = torch.linalg.cholesky(0.5 * (cov + cov.T))
            whiten = torch.linalg.solve_triangular(tril, eye, upper=False)
        else:
            var = centred.pow(2).mean(0) + noise_var
            whiten = torch.diag(var.clamp_min(self.min_std**2).rsqrt())
        self.loc.copy_(mean)
        self.whiten.copy_(whiten)
        # The ActNorms see the training distribution: poses plus the training noise, drawn from a
        # local generator so that initialize() is deterministic and leaves the global RNG alone.
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device)
        self.flow.initialize(self._whiten(self._select(x) + (self.noise_std * noise).to(x.dtype)))

    def _whiten(self, v: Tensor) -> Tensor:
        return (v - self.loc) @ self.whiten.T

    def _unwhiten(self, y: Tensor) -> Tensor:
        return torch.linalg.solve_triangular(self.whiten, y.T, upper=False).T + self.loc

    def _density(self, v: Tensor) -> Tensor:
        """(N, D) modelled values -> (N,) log-density."""
        z, logdet = self.flow(self._whiten(v))
        const = 0.5 * v.shape[1] * math.log(2 * math.pi)
        return -0.5 * z.pow(2).sum(-1) + logdet + (self.whiten.diagonal().log().sum() - const)

    def _log_prob(self, x: Tensor) -> Tensor:
        return self._fused_or_plain(x, mixture=False)

    def _full_log_prob(self, x: Tensor) -> Tensor:
        return self._fused_or_plain(x, mixture=True)

    def _fused_or_plain(self, x: Tensor, mixture: bool) -> Tensor:
        """(N, J, 3) -> (N,): the flow's density, or (``mixture``) the whole prior's.

        The fused density when it can be used (see :meth:`_fused`), with the broad component and
        the anatomical values in the same pass: at batch 1 each autograd node costs as much as a
        small matrix product.
        """
        fused = self._fused()
        if fused is None:
            return self._plain_mixture(x) if mixture else self._plain_density(x)
        parts = self._fused_cache[3] if mixture else FusedParts()
        if torch.is_grad_enabled() and x.requires_grad:
            plain = self._plain_mixture if mixture else self._plain_density
            return _FusedLogProb.apply(x, fused, self._compiled_fused, plain, parts)
        return fused.log_prob(x.reshape(x.shape[0], -1), self._compiled_fused, parts)

    def _run_density(self, v: Tensor) -> Tensor:
        """(N, model_dim) -> (N,): :meth:`_density`, compiled if :meth:`compile` asked for it."""
        return self._density(v) if self._compiled is None else self._compiled(self, v)

    def _plain_density(self, x: Tensor) -> Tensor:
        return self._run_density(self._select(x))

    def _plain_mixture(self, x: Tensor) -> Tensor:
        return self._mix(self._plain_density(x), x)

    def _fused(self) -> FusedMAFDensity | None:
        """The fused density of the current weights if it can be used now (else ``None``).

        Used when no gradient can reach the prior's own tensors (``requires_grad_(False)``, or
        under ``no_grad``) with ``transform="maf"``, outside ``torch.compile`` tracing and
        ``torch.func`` transforms. It is rebuilt (about a millisecond) whenever a tensor it is
        made from changes: the cache key holds each tensor's in-place version counter (bumped by
        optimizer steps and ``load_state_dict``) and storage address (``.to()``, ``.double()``),
        and the cache keeps the tensors themselves, so a replaced one (``assign=True``) is seen too.
        """
        if (
            self.transform != "maf" or torch.compiler.is_compiling() or _functorch_active()
        ):  # torch.func: the plain path
            return None
        flow = self.flow
        sources = self._fused_sources
        if sources is None or sources[0] is not flow:
            here = [(self._buffers, name) for name in ("loc", "whiten", "learned")]
            here += [
                (part._buffers, name)
                for part in (self.broad, self.anatomy)
                if part is not None
                for name in ("loc", "inv_scale", "log_norm")
            ]
            pairs = here + FusedMAFDensity.sources(flow)
            sources = self._fused_sources = (flow, [d for d, _ in pairs], [name for _, name in pairs])
        tensors = list(map(dict.__getitem__, sources[1], sources[2]))  # (a C loop: ~90 tensors)
        if torch.is_grad_enabled() and any(map(_REQUIRES_GRAD, tensors)):
            return None
        key = (list(map(_VERSION, tensors)), list(map(_DATA_PTR, tensors)), self.broad_weight)
        cache = self._fused_cache
        if cache is None or cache[0] != key or not all(map(operator.is_, tensors, cache[1])):
            d_in = self.learned.numel()
            matrix = self.whiten.new_zeros(d_in, self.model_dim)
            matrix[self.learned] = self.whiten.T
            const = float(self.whiten.diagonal().log().sum()) - 0.5 * self.model_dim * math.log(2 * math.pi)
            fused = FusedMAFDensity(self.flow, matrix, -self.loc @ self.whiten.T, const)
            w = self.broad_weight
            parts = FusedParts(
                broad=self.broad.constants(math.log(w)) if self.broad is not None else None,
                log_weight_flow=math.log1p(-w),
                anatomy=self.anatomy.constants() if self.dim > self.model_dim else None,
            )
            cache = self._fused_cache = (key, tensors, fused, parts)
        return cache[2]

    def _training_loss(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.training and self.part_swap > 0:
            x = swap_limbs(x, self.layout, self.part_swap, generator)
        v = self._select(x)
        if self.training and self.noise_std > 0:
            v = v + self.noise_std * randn(v.shape, generator, v)
        return -self._run_density(v).mean()

    def _sample_values(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """-> (n, model_dim) learned values and their (n,) log-density."""
        u = randn((n, self.model_dim), generator, self.loc)
        y, logdet_inv = self.flow.inverse(u)
        const = 0.5 * u.shape[1] * math.log(2 * math.pi)
        log_prob = -0.5 * u.pow(2).sum(-1) - logdet_inv + (self.whiten.diagonal().log().sum() - const)
        return self._unwhiten(y), log_prob

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self._fill(self._sample_values(n, generator)[0])

    # ------------------------------------------------------------------ extras
    def _sample_and_log_prob(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        values, log_prob = self._sample_values(n, generator)
        return self._fill(values), log_prob

    @torch.no_grad()
    def round_trip(self, x: Tensor) -> Tensor:
        r"""``inverse(forward(x))`` for poses with shape :math:`(N, J, 3)`; excluded values kept as given.

        Used by :func:`poseprior.metrics.round_trip_error` to measure the numerical invertibility.
        """
        x = self._check(x, "round_trip")
        self._check_initialized("round_trip")
        batch = x.shape[:-2]
        x = x.reshape(-1, *self.event_shape)
        z, _ = self.flow(self._whiten(self._select(x)))
        y, _ = self.flow.inverse(z)
        out = x.reshape(x.shape[0], -1).clone()
        out[:, self.learned] = self._unwhiten(y)
        return out.reshape(*batch, *self.event_shape)

    def compile(self, *, enabled: bool = True, **options: Any) -> GlobalFlowPrior:  # type: ignore[override]
        r"""Opts in to ``torch.compile`` for the density (``log_prob``, ``training_loss``); returns ``self``.

        Only this prior's density function is compiled (no global state changes); sampling stays
        eager. ``options`` go to :func:`torch.compile` (e.g. ``dynamic=False``). The first call of
        each new batch size, dtype or grad mode compiles (tens of seconds on 2 CPU cores).
        ``enabled=False`` goes back to eager. Unlike ``nn.Module.compile`` it does not compile
        ``forward``, which priors do not use.

        For a regularizer, also freeze the prior (``prior.requires_grad_(False)``): ``log_prob``
        then runs the fused density and pose gradient (see the class docstring), and that pure
        function of the folded weights is what gets compiled, once for all weight values (no
        recompilation after a weight update). For batch-1 regularizer steps
        ``prior.compile(options={"cpp_wrapper": True})`` has the least per-call overhead.
        ``benchmarks/speed_global_flow.py`` measures both modes.
        """
        self._compile_options = options if enabled else None
        # The class's function, called with the prior: a copy of a compiled prior uses its own weights.
        self._compiled = torch.compile(type(self)._density, **options) if enabled else None
        # The fused frozen path is a pure function of the folded weights: compiled once, it serves
        # every weight value (the weights are its inputs, not constants baked into the graph).
        self._compiled_fused = torch.compile(fused_maf_log_prob, **options) if enabled else None
        return self


class _FusedLogProb(torch.autograd.Function):
    """``log_prob`` of poses ``(N, J, 3)`` through :class:`FusedMAFDensity`, with its hand-written gradient.

    Only the pose gets a gradient (the prior is frozen when this is used). Under
    ``create_graph=True`` (a Hessian, a gradient penalty) the backward recomputes the gradient
    with the plain differentiable density, so higher derivatives are exact too. ``torch.func``
    transforms never get here (see ``GlobalFlowPrior._fused``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        fused: FusedMAFDensity,
        impl: Callable | None,
        plain: Callable[[Tensor], Tensor],
        parts: FusedParts,
    ) -> Tensor:
        # (N, J, 3) in, reshaped here rather than by the caller: no view node in the graph.
        lp, grad = fused.log_prob_and_grad(x.reshape(x.shape[0], -1), impl, parts)
        ctx.grad = grad.view(x.shape)
        ctx.plain = plain
        ctx.save_for_backward(x)
        return lp.clone()  # not an inference tensor: callers may modify it in place

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
        if torch.is_grad_enabled():  # create_graph=True: a differentiable gradient
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                (g,) = torch.autograd.grad(ctx.plain(x), x, grad, create_graph=True)
            return g, None, None, None, None
        return ctx.grad * grad.view(-1, 1, 1), None, None, None, None
