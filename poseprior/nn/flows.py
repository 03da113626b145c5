r"""Normalizing-flow building blocks on top of ``nflows.transforms``.

nflows supplies the autoregressive (MADE) and coupling networks. This module adds the few pieces
nflows lacks or gets wrong on today's torch, each small and unit-tested:

* :class:`ActNorm` with an explicit :meth:`ActNorm.initialize` and an epsilon. nflows' ``ActNorm``
  initializes itself on the first training-mode call (a first batch of one sample gives NaN for
  ever) and divides by a standard deviation that is zero on a constant dimension.
* :class:`FixedPermutation`, whose permutation is a buffer made deterministically (reversal, or a
  ``torch.Generator`` seeded by the caller). nflows' ``RandomPermutation`` draws from the global
  RNG at construction, so two identical constructions differ.
* :class:`BoundedMaskedAffineAutoregressive` and :class:`BoundedAffineCoupling`: nflows' affine
  layers with the log-scale soft-clamped to :math:`\pm` ``max_log_scale``. nflows' MAF uses
  ``softplus(u) + 1e-3``, whose scale grows without bound with the input, so stacked layers blow
  far-away poses up to inf; with a bounded scale the output grows at most linearly per layer.
* :class:`TransformStack`: a plain Python loop over the transforms (cheaper than
  ``CompositeTransform`` at batch 1) with a Glow-style sequential ActNorm initialization.

Never used here: ``NaiveLinear`` (its inverse calls the removed ``torch.solve``), nflows'
distributions (they import matplotlib and sample from the global RNG; the priors own their base).

Every transform maps ``(N, D) -> ((N, D), (N,))``: outputs and the log-absolute-determinant of
the Jacobian of the map that was applied (``inverse`` returns the log-det of the inverse map).
"""

from __future__ import annotations

from typing import Literal

import torch
from nflows.nn.nets import ResidualNet
from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
from nflows.transforms.base import Transform
from nflows.transforms.coupling import AffineCouplingTransform
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import NotInitializedError

__all__ = [
    "ActNorm",
    "BoundedAffineCoupling",
    "BoundedMaskedAffineAutoregressive",
    "FixedPermutation",
    "TransformStack",
    "build_flow",
    "soft_clamp",
]


def soft_clamp(u: Tensor, bound: float) -> Tensor:
    r"""Smoothly maps ``u`` into :math:`(-\mathrm{bound}, \mathrm{bound})`: :math:`b \tanh(u / b)`.

    Identity near 0 (slope 1), so a freshly initialized layer with ``u ~ 0`` is near the identity.
    """
    return bound * torch.tanh(u / bound)


class ActNorm(Transform):
    r"""Per-feature affine normalization :math:`y = (x - \mathrm{loc}) \, e^{-\mathrm{log\_scale}}`.

    Unlike nflows' ``ActNorm``, the data-dependent initialization is an explicit call,
    :meth:`initialize`, which sets ``loc`` to the batch mean and ``log_scale`` to
    :math:`\frac12 \log(\mathrm{var} + \epsilon)` (the biased variance, so a batch of one sample is
    valid: it gives ``var = 0``). The epsilon keeps constant dimensions finite: they are scaled by
    :math:`\epsilon^{-1/2}` instead of infinity. Calling :meth:`forward` or :meth:`inverse` before
    :meth:`initialize` raises :class:`~poseprior.NotInitializedError`. The ``initialized`` flag is
    a buffer, so it is saved with the ``state_dict``.

    Arguments:
        features: The number of features :math:`D`.
        eps: Added to the variance at initialization.
    """

    def __init__(self, features: int, eps: float = 1e-4) -> None:
        super().__init__()
        if features < 1 or eps <= 0:
            raise ValueError(f"ActNorm needs features >= 1 and eps > 0, got {features} and {eps}")
        self.features = int(features)
        self.eps = float(eps)
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        r"""Sets ``loc`` and ``log_scale`` from a batch ``x`` with shape :math:`(N, D)`, :math:`N \ge 1`."""
        if x.dim() != 2 or x.shape[1] != self.features or x.shape[0] < 1:
            raise ValueError(
                f"ActNorm.initialize: expected shape (N >= 1, {self.features}), got {tuple(x.shape)}"
            )
        x = x.to(self.loc.dtype)
        mean = x.mean(0)
        var = (x - mean).pow(2).mean(0)
        self.loc.copy_(mean)
        self.log_scale.copy_(0.5 * torch.log(var + self.eps))
        self.initialized.fill_(True)

    def _check_initialized(self) -> None:
        # Skipped while torch.compile traces (a data-dependent branch would break the graph); the
        # priors check their own `initialized` flag at the public boundary before compiled code runs.
        if not torch.compiler.is_compiling() and not bool(self.initialized):
            raise NotInitializedError(
                "ActNorm used before initialization: call .initialize(x) on a batch first"
            )

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_initialized()
        outputs = (inputs - self.loc) * torch.exp(-self.log_scale)
        return outputs, (-self.log_scale.sum()).expand(inputs.shape[0])

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_initialized()
        outputs = inputs * torch.exp(self.log_scale) + self.loc
        return outputs, self.log_scale.sum().expand(inputs.shape[0])


class FixedPermutation(Transform):
    r"""A fixed permutation of the features, held in buffers (``indices`` and ``inverse_indices``).

    Build it with :meth:`reverse` or :meth:`random` (which uses only the generator it is given),
    or from an explicit permutation tensor. The log-det is 0.
    """

    def __init__(self, permutation: Tensor) -> None:
        super().__init__()
        permutation = torch.as_tensor(permutation, dtype=torch.long)
        n = permutation.numel()
        if permutation.dim() != 1 or not torch.equal(permutation.sort().values, torch.arange(n)):
            raise ValueError(
                f"FixedPermutation: expected a permutation of 0..{n - 1}, got {permutation.tolist()}"
            )
        self.register_buffer("indices", permutation.clone())
        self.register_buffer("inverse_indices", torch.argsort(permutation))

    @classmethod
    def reverse(cls, features: int) -> FixedPermutation:
        """The reversal :math:`(D-1, \\dots, 0)`."""
        return cls(torch.arange(features - 1, -1, -1))

    @classmethod
    def random(cls, features: int, generator: torch.Generator) -> FixedPermutation:
        """A uniformly random permutation drawn with ``generator`` (never the global RNG)."""
        return cls(torch.randperm(features, generator=generator))

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return inputs[:, self.indices], inputs.new_zeros(inputs.shape[0])

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return inputs[:, self.inverse_indices], inputs.new_zeros(inputs.shape[0])


class BoundedMaskedAffineAutoregressive(MaskedAffineAutoregressiveTransform):
    r"""nflows' masked affine autoregressive transform (MAF) with a bounded scale.

    :math:`y_i = x_i \, e^{s_i} + t_i` with :math:`s_i = b \tanh(u_i / b)`, where :math:`(u_i, t_i)`
    come from a MADE over :math:`x_{<i}` and :math:`b` = ``max_log_scale``. The forward pass
    (density evaluation) is one network call; the inverse (sampling) takes :math:`D` calls, or
    ``groups`` calls with grouped autoregression.

    Arguments:
        features: :math:`D`.
        hidden_features: Width of the MADE.
        num_blocks: Number of masked residual blocks in the MADE.
        max_log_scale: Bound :math:`b` of the per-dimension log-scale.
        input_bound: If given, :math:`c`: the MADE sees :math:`c \tanh(x / c)` instead of :math:`x`,
            so :math:`s` and :math:`t` are bounded functions of the input, and far from the data the
            layer is an affine map with bounded coefficients (no runaway shifts when sampling).
        groups: If given, :math:`G \geq 2`: the features are split into :math:`G` consecutive
            groups and each group depends only on the groups before it (not on the features before
            it in its own group), so the inverse takes :math:`G` network calls instead of :math:`D`.
    """

    def __init__(
        self,
        features: int,
        hidden_features: int,
        num_blocks: int = 2,
        max_log_scale: float = 3.0,
        input_bound: float | None = None,
        groups: int | None = None,
    ) -> None:
        super().__init__(features, hidden_features, num_blocks=num_blocks, use_residual_blocks=True)
        self.max_log_scale = float(max_log_scale)
        self.input_bound = None if input_bound is None else float(input_bound)
        if groups is not None and not 2 <= groups <= features:
            raise ValueError(f"groups must be in [2, features={features}], got {groups}")
        self.groups = groups
        if groups is not None:
            self._regroup(groups)
        self._cache: list[Tensor] = []
        self._cache_key: tuple | None = None

    @torch.no_grad()
    def _regroup(self, groups: int) -> None:
        """Sets the MADE's masks (and degrees) for grouped autoregression over ``groups`` groups."""
        d = self.features
        made = self.autoregressive_net
        group = torch.arange(d) * groups // d + 1  # input degrees 1..G, consecutive groups
        hidden = torch.arange(made.initial_layer.out_features) % (groups - 1) + 1  # degrees 1..G-1
        layers = [made.initial_layer, *(lin for blk in made.blocks for lin in blk.linear_layers)]
        for i, lin in enumerate(layers):
            inputs = group if i == 0 else hidden
            lin.mask.copy_((hidden[:, None] >= inputs[None, :]).to(lin.mask))
            lin.degrees.copy_(hidden)
        out = group.repeat_interleave(made.final_layer.out_features // d)  # (s_i, t_i) per feature
        made.final_layer.mask.copy_((out[:, None] > hidden[None, :]).to(made.final_layer.mask))
        made.final_layer.degrees.copy_(out)

    def _linears(self) -> list[nn.Module]:
        made = self.autoregressive_net
        inner = [layer for block in made.blocks for layer in block.linear_layers]
        return [made.initial_layer, *inner, made.final_layer]

    def _masked_weights(self) -> list[Tensor]:
        """``weight * mask`` of every MADE layer, cached while no gradient can reach the weights.

        At batch 1 the mask products cost about as much as the matrix products. When the weights
        are frozen (``requires_grad_(False)``, the regularizer use) or under ``no_grad``, they are
        reused until a weight changes: the key holds each weight's storage address and in-place
        version counter (bumped by optimizer steps and ``load_state_dict``), and ``_apply``
        (``.to()``, ``.double()``) clears the cache.
        """
        linears = self._linears()
        if torch.compiler.is_compiling() or (
            torch.is_grad_enabled() and any(m.weight.requires_grad for m in linears)
        ):  # (compiled code fuses the products itself; the cache's Python would break the graph)
            return [m.weight * m.mask for m in linears]
        key = tuple((m.weight.data_ptr(), m.weight._version) for m in linears)
        if self._cache_key != key:
            self._cache = [(m.weight * m.mask).detach() for m in linears]
            self._cache_key = key
        return self._cache

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202  (nn.Module's signature)
        self._cache, self._cache_key = [], None
        return super()._apply(fn, recurse)

    def _made(self, x: Tensor) -> Tensor:
        """nflows' ``MADE.forward`` for this configuration, as plain function calls.

        The same parameters and masks, without the ~13 module calls per layer that dominate the
        cost at batch 1 (residual blocks, ReLU, no context, batch norm or dropout).
        """
        made = self.autoregressive_net
        weights = self._masked_weights()
        if self.input_bound is not None:
            x = soft_clamp(x, self.input_bound)
        h = F.linear(x, weights[0], made.initial_layer.bias)
        for i, block in enumerate(made.blocks):
            l0, l1 = block.linear_layers
            t = F.linear(F.relu(h), weights[1 + 2 * i], l0.bias)
            h = h + F.linear(F.relu(t), weights[2 + 2 * i], l1.bias)
        return F.linear(h, weights[-1], made.final_layer.bias)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._elementwise_forward(inputs, self._made(inputs))

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # D (or G) passes: output i is exact once inputs < i (the groups before its own) are
        # (nflows' AutoregressiveTransform.inverse).
        outputs = torch.zeros_like(inputs)
        logabsdet = inputs.new_zeros(inputs.shape[0])
        for _ in range(self.groups or self.features):
            outputs, logabsdet = self._elementwise_inverse(inputs, self._made(outputs))
        return outputs, logabsdet

    def _elementwise_forward(self, inputs: Tensor, autoregressive_params: Tensor) -> tuple[Tensor, Tensor]:
        u, shift = self._unconstrained_scale_and_shift(autoregressive_params)
        log_scale = soft_clamp(u, self.max_log_scale)
        return inputs * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def _elementwise_inverse(self, inputs: Tensor, autoregressive_params: Tensor) -> tuple[Tensor, Tensor]:
        u, shift = self._unconstrained_scale_and_shift(autoregressive_params)
        log_scale = soft_clamp(u, self.max_log_scale)
        return (inputs - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


class BoundedAffineCoupling(AffineCouplingTransform):
    r"""nflows' affine coupling layer (RealNVP) with the log-scale soft-clamped to :math:`\pm b`.

    The features where ``mask > 0`` are transformed by :math:`x e^{s} + t`, with :math:`(s, t)`
    given by a residual network of the others. Forward and inverse cost one network call each.
    """

    def __init__(
        self, mask: Tensor, hidden_features: int, num_blocks: int = 2, max_log_scale: float = 3.0
    ) -> None:
        def net(n_in: int, n_out: int) -> nn.Module:
            return ResidualNet(n_in, n_out, hidden_features, num_blocks=num_blocks)

        super().__init__(mask, net)
        self.max_log_scale = float(max_log_scale)

    def _log_scale_and_shift(self, params: Tensor) -> tuple[Tensor, Tensor]:
        n = self.num_transform_features
        return soft_clamp(params[:, n:], self.max_log_scale), params[:, :n]

    def _coupling_transform_forward(self, inputs: Tensor, transform_params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self._log_scale_and_shift(transform_params)
        return inputs * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def _coupling_transform_inverse(self, inputs: Tensor, transform_params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self._log_scale_and_shift(transform_params)
        return (inputs - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


class TransformStack(nn.Module):
    r"""Applies transforms in order; ``forward`` sums their log-dets, ``inverse`` undoes them.

    A Python loop instead of nflows' ``CompositeTransform``, to keep the per-call overhead low at
    batch 1. :meth:`initialize` initializes every :class:`ActNorm` in turn on the activations that
    reach it (Glow's data-dependent initialization, done explicitly).
    """

    def __init__(self, transforms: list[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Initializes the ActNorm layers from a batch ``x`` with shape :math:`(N, D)`."""
        for t in self.transforms:
            if isinstance(t, ActNorm):
                t.initialize(x)
            x, _ = t(x)

    @property
    def initialized(self) -> bool:
        """Whether every ActNorm layer has been initialized."""
        return all(bool(t.initialized) for t in self.transforms if isinstance(t, ActNorm))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, D) -> ((N, D), (N,)): the output and the log-det of the whole map."""
        logdet = None
        for t in self.transforms:
            if isinstance(t, FixedPermutation):  # log-det 0: skip the zeros and the add
                x = x[:, t.indices]
                continue
            x, ld = t(x)
            logdet = ld if logdet is None else logdet + ld
        return x, (logdet if logdet is not None else x.new_zeros(x.shape[0]))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(N, D) -> ((N, D), (N,)): the inverse map and its log-det (minus the forward one)."""
        logdet = None
        for t in reversed(self.transforms):
            if isinstance(t, FixedPermutation):
                z = z[:, t.inverse_indices]
                continue
            z, ld = t.inverse(z)
            logdet = ld if logdet is None else logdet + ld
        return z, (logdet if logdet is not None else z.new_zeros(z.shape[0]))


def build_flow(
    features: int,
    *,
    blocks: int = 4,
    hidden_features: int = 128,
    residual_blocks: int = 2,
    transform: Literal["maf", "coupling"] = "maf",
    permutation: Literal["random", "reverse"] = "random",
    seed: int = 0,
    max_log_scale: float = 3.0,
    actnorm_eps: float = 1e-4,
    input_bound: float | None = None,
    groups: int | None = None,
) -> TransformStack:
    r"""Builds ``blocks`` times ActNorm -> affine MAF or coupling layer -> permutation.

    Arguments:
        features: The dimension :math:`D`.
        blocks: Number of ActNorm/transform/permutation blocks.
        hidden_features: Width of each MADE or coupling network.
        residual_blocks: Residual blocks per network.
        transform: ``"maf"`` (one network call for the density, :math:`D` per sample) or
            ``"coupling"`` (RealNVP: one call each way; needs :math:`D \ge 2`).
        permutation: ``"random"`` (drawn from a ``torch.Generator`` seeded with ``seed``) or
            ``"reverse"``.
        seed: Seed of the permutations and of the initial weights. The flow is built inside
            ``torch.random.fork_rng``, so the global RNG state is the same afterwards.
        max_log_scale: Bound of each layer's per-dimension log-scale.
        actnorm_eps: Epsilon of the ActNorm variance.
        input_bound: ``"maf"`` only: the bound of the MADE's soft-clamped input (see
            :class:`BoundedMaskedAffineAutoregressive`), or ``None``.
        groups: ``"maf"`` only: the number of autoregressive groups (at most :math:`D`; ``None``:
            one feature per group).

    Returns:
        A :class:`TransformStack` whose ActNorm layers still need :meth:`TransformStack.initialize`.
    """
    if transform not in ("maf", "coupling"):
        raise ValueError(f"transform must be 'maf' or 'coupling', got {transform!r}")
    if permutation not in ("random", "reverse"):
        raise ValueError(f"permutation must be 'random' or 'reverse', got {permutation!r}")
    if blocks < 1 or hidden_features < 1 or residual_blocks < 0:
        raise ValueError(
            f"need blocks >= 1, hidden_features >= 1, residual_blocks >= 0; got {blocks}, "
            f"{hidden_features}, {residual_blocks}"
        )
    if transform == "coupling" and features < 2:
        raise ValueError(f"a coupling flow needs at least 2 modelled values, got D = {features}; use 'maf'")
    with torch.random.fork_rng(devices=[]):
        # nn.Linear initializes from the global RNG: fork it so that building a flow is
        # deterministic given `seed` and the caller's RNG stream is left exactly as it was.
        torch.manual_seed(int(seed))
        maf = {"input_bound": input_bound, "groups": None if groups is None else min(int(groups), features)}
        if maf["groups"] == 1:  # one feature: its one group depends on nothing, as with groups=None
            maf["groups"] = None
        return _build(
            features,
            blocks,
            hidden_features,
            residual_blocks,
            transform,
            permutation,
            seed,
            max_log_scale,
            actnorm_eps,
            maf,
        )


def _build(
    features: int,
    blocks: int,
    hidden_features: int,
    residual_blocks: int,
    transform: str,
    permutation: str,
    seed: int,
    max_log_scale: float,
    actnorm_eps: float,
    maf: dict,
) -> TransformStack:
    gen = torch.Generator().manual_seed(int(seed))
    layers: list[Transform] = []
    for i in range(blocks):
        layers.append(ActNorm(features, eps=actnorm_eps))
        if transform == "maf":
            layers.append(
                BoundedMaskedAffineAutoregressive(
                    features, hidden_features, residual_blocks, max_log_scale, **maf
                )
            )
        else:
            mask = (torch.arange(features) + i) % 2  # alternate halves between blocks
            layers.append(BoundedAffineCoupling(mask, hidden_features, residual_blocks, max_log_scale))
        if permutation == "random":
            layers.append(FixedPermutation.random(features, gen))
        else:
            layers.append(FixedPermutation.reverse(features))
    return TransformStack(layers)
