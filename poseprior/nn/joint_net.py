r"""Batched machinery of the per-joint flow prior: stacked MLPs and a rational-quadratic spline.

:class:`StackedMLP` holds :math:`M` independent MLPs of the same shape and evaluates all of them
(or any subset) with one batched matrix product per layer, instead of a Python loop over
:math:`M` networks: at small batch sizes the loop's Python overhead dominates, at large ones the
one-matmul-per-layer form keeps the 2 CPU cores busy.

:func:`rq_spline` is the monotone rational-quadratic spline of Durkan et al. (2019) with linear
(identity) tails, the same map as nflows'
``unconstrained_rational_quadratic_spline(..., tails="linear")`` (a test checks that they agree
to float64 precision, forward and inverse). It is written out here rather than called from nflows
for speed and static shapes: nflows routes the values inside and outside the interval through
boolean-mask indexing (data-dependent shapes and copies) and calls ``torch.softmax`` over the
short bins axis, which is slow on CPU. Here the input is clamped into the interval, the spline is
evaluated on every value and ``torch.where`` selects the identity outside, which also keeps
gradients finite for any finite input (the branch that is not selected is always evaluated at a
finite, in-range point); and the parameters may be laid out with the batch axis last
(``dim=-2``), so that every operation over the bins is vectorized along the batch. Together about
3x faster than nflows' function on CPU.

References:
    Durkan et al., "Neural Spline Flows", NeurIPS 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StackedMLP", "rq_spline", "spline_param_count", "identity_spline_params"]

DEFAULT_MIN_BIN_WIDTH = 1e-3
DEFAULT_MIN_BIN_HEIGHT = 1e-3
DEFAULT_MIN_DERIVATIVE = 1e-3


def spline_param_count(num_bins: int) -> int:
    r"""The number of unconstrained parameters of one spline with linear tails: :math:`3K - 1`."""
    return 3 * num_bins - 1


def identity_spline_params(num_bins: int, min_derivative: float = DEFAULT_MIN_DERIVATIVE) -> Tensor:
    r"""Unconstrained parameters, with shape :math:`(3K - 1,)`, for which :func:`rq_spline` is the identity.

    Equal bins and interior derivatives of exactly 1 (``min_derivative + softplus(c) = 1``).
    """
    params = torch.zeros(spline_param_count(num_bins), dtype=torch.float64)
    params[2 * num_bins :] = math.log(math.expm1(1.0 - min_derivative))
    return params


def rq_spline(
    inputs: Tensor,
    params: Tensor,
    *,
    tail_bound: float,
    inverse: bool = False,
    dim: int = -1,
    min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
    min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
    min_derivative: float = DEFAULT_MIN_DERIVATIVE,
) -> tuple[Tensor, Tensor]:
    r"""Elementwise monotone rational-quadratic spline on :math:`[-B, B]`, the identity outside.

    The spline maps :math:`[-B, B]` onto itself with :math:`K` bins; its derivative is 1 at both
    ends, so with the identity tails it is a :math:`C^1` bijection of the real line. Its parameters
    are unconstrained (widths and heights through a softmax with a minimum size, interior knot
    derivatives through ``min_derivative + softplus``), in nflows' order and convention.

    Arguments:
        inputs: Values with shape :math:`(*)`; any finite value is accepted.
        params: Unconstrained parameters: :math:`K` widths, :math:`K` heights, :math:`K - 1`
            interior derivatives, along axis ``dim``; the other axes match ``inputs``, e.g. shape
            :math:`(*, 3K - 1)` with ``dim=-1``.
        tail_bound: :math:`B`, the half-width of the interval where the spline is not the identity.
        inverse: Evaluate the inverse map instead.
        dim: The (negative) axis of ``params`` that holds the parameters. ``dim=-2`` with
            ``params`` of shape :math:`(M, 3K - 1, N)` and ``inputs`` of shape :math:`(M, N)` keeps
            the long axis :math:`N` contiguous, so every reduction over the bins is a vectorized
            elementwise operation (about twice as fast on CPU).
        min_bin_width: Minimum bin width, as a fraction of the interval.
        min_bin_height: Minimum bin height, as a fraction of the interval.
        min_derivative: Minimum derivative at the interior knots.

    Returns:
        The outputs with shape :math:`(*)` and :math:`\log |\partial y / \partial x|` with shape
        :math:`(*)` (of the inverse map when ``inverse``).
    """
    if dim >= 0:
        raise ValueError(f"rq_spline: dim must be negative (counted from the end), got {dim}")
    k = (params.shape[dim] + 1) // 3
    bound = float(tail_bound)
    inside = inputs.abs() <= bound
    # Work on [0, 1]: both axes are scaled by the same 2B, so slopes and derivatives are unchanged.
    t = ((inputs.clamp(-bound, bound) + bound) / (2.0 * bound)).unsqueeze(dim)
    widths, heights, right_x, right_y, derivs = _bins(
        params, k, dim, min_bin_width, min_bin_height, min_derivative
    )
    # Bin index: the number of interior knots at or below t.
    knots = (right_y if inverse else right_x).narrow(dim, 0, k - 1)
    idx = (t >= knots).sum(dim, keepdim=True)

    def pick(table: Tensor, index: Tensor = idx) -> Tensor:
        return table.gather(dim, index).squeeze(dim)

    w, h = pick(widths), pick(heights)
    x0, y0 = pick(right_x) - w, pick(right_y) - h
    out01, logdet = _rq_segment(t.squeeze(dim), w, h, x0, y0, pick(derivs), pick(derivs, idx + 1), inverse)
    out = out01 * (2.0 * bound) - bound
    return torch.where(inside, out, inputs), torch.where(inside, logdet, torch.zeros_like(logdet))


def _bins(
    params: Tensor, k: int, dim: int, min_bin_width: float, min_bin_height: float, min_derivative: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Bin widths, heights, right edges (x and y) and knot derivatives on [0, 1], along ``dim``."""
    # Widths and heights in one softmax, written out: torch.softmax over an axis of K ~ 8 is
    # about 10x slower on CPU than these elementwise operations. The bins axis stays at `dim`.
    wh = params.narrow(dim, 0, 2 * k).unflatten(dim, (2, k))
    e = (wh - wh.amax(dim, keepdim=True)).exp()
    min_size = e.new_tensor([min_bin_width, min_bin_height]).reshape(2, *([1] * -dim))
    sizes = e / e.sum(dim, keepdim=True) * (1.0 - min_size * k) + min_size
    right = sizes.cumsum(dim)  # right edges of the bins; the last one is 1 up to rounding
    widths, heights = sizes.unbind(dim - 1)
    right_x, right_y = right.unbind(dim - 1)
    # Boundary derivatives are exactly 1, matching the identity tails (C^1 at +-B).
    derivs = min_derivative + F.softplus(params.narrow(dim, 2 * k, k - 1))
    derivs = F.pad(derivs, (0, 0) * (-dim - 1) + (1, 1), value=1.0)
    return widths, heights, right_x, right_y, derivs


def _rq_segment(
    t: Tensor, w: Tensor, h: Tensor, x0: Tensor, y0: Tensor, d0: Tensor, d1: Tensor, inverse: bool
) -> tuple[Tensor, Tensor]:
    """The rational-quadratic map of ``t`` within its bin (or its inverse), on [0, 1], and its log-det."""
    delta = h / w
    s = d0 + d1 - 2.0 * delta
    if inverse:
        dy = t - y0
        a = h * (delta - d0) + dy * s
        b = h * d0 - dy * s
        c = -delta * dy
        # The root form of nflows: its denominator is strictly negative for t inside the bin.
        disc = (b * b - 4.0 * a * c).clamp_min(0.0)
        theta = ((2.0 * c) / (-b - disc.sqrt())).clamp(0.0, 1.0)
    else:
        theta = ((t - x0) / w).clamp(0.0, 1.0)
    om = 1.0 - theta
    tt = theta * om
    denom = delta + s * tt
    numerator = d1 * theta * theta + 2.0 * delta * tt + d0 * om * om
    logdet = 2.0 * delta.log() + numerator.log() - 2.0 * denom.log()
    if inverse:
        return x0 + theta * w, -logdet
    return y0 + h * (delta * theta * theta + d0 * tt) / denom, logdet


class StackedMLP(nn.Module):
    r"""Creates :math:`M` independent MLPs of one shape, evaluated with batched matrix products.

    Layer :math:`l` holds a weight with shape :math:`(M, n_{l+1}, n_l)` (``nn.Linear``'s
    out-by-in convention, per network) and a bias with shape :math:`(M, n_{l+1}, 1)`. Activations
    are laid out *feature-major*, :math:`(M, n_l, N)` with the batch axis last and contiguous:
    :meth:`forward` computes ``baddbmm(bias, weight, h)`` per layer, which on CPU is faster than
    the batch-major :math:`(M, N, n_l)` form and broadcasts the bias without a copy. An optional
    fixed 0/1 ``input_mask`` with shape :math:`(M, n_0)` multiplies the first layer's weight, so
    that network :math:`m` cannot see the inputs its mask hides (MADE-style masking).

    The last layer starts at zero weight and bias ``out_init``, so every network initially outputs
    ``out_init`` whatever its input (e.g. the identity spline).

    Arguments:
        n: The number of networks :math:`M`.
        in_features: Input size :math:`n_0`.
        hidden: Hidden width.
        layers: The number of hidden layers (at least 1).
        out_features: Output size.
        input_mask: Optional 0/1 mask with shape :math:`(M, n_0)`.
        out_init: Optional initial output with shape :math:`(n_{out},)`.
        activation: The hidden activation, a function with an ``inplace`` argument (``F.silu``).
        generator: The generator of the initial weights (``None``: torch's global RNG).
    """

    def __init__(
        self,
        n: int,
        in_features: int,
        hidden: int,
        layers: int,
        out_features: int,
        *,
        input_mask: Tensor | None = None,
        out_init: Tensor | None = None,
        activation: Callable[..., Tensor] = F.silu,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if layers < 1 or hidden < 1 or n < 1:
            raise ValueError(f"StackedMLP needs n, hidden and layers >= 1, got {n}, {hidden}, {layers}")
        sizes = [in_features] + [hidden] * layers + [out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
            last = i == len(sizes) - 2
            bound = 1.0 / math.sqrt(a)  # nn.Linear's default uniform init, per network
            w = (
                torch.zeros(n, b, a)
                if last
                else torch.empty(n, b, a).uniform_(-bound, bound, generator=generator)
            )
            bias = (
                torch.zeros(n, b, 1)
                if last
                else torch.empty(n, b, 1).uniform_(-bound, bound, generator=generator)
            )
            if last and out_init is not None:
                bias[:] = out_init.to(bias.dtype).unsqueeze(-1)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(bias))
        mask = torch.ones(n, in_features) if input_mask is None else input_mask.to(torch.float32)
        if mask.shape != (n, in_features):
            raise ValueError(f"input_mask must have shape {(n, in_features)}, got {tuple(mask.shape)}")
        self.register_buffer("input_mask", mask.unsqueeze(1), persistent=False)
        self.activation = activation

    def subset(self, index: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        r"""The (masked) weights and biases of networks ``index`` (all when ``None``), per layer.

        For :meth:`apply`; gathering them once pays off when a subset is evaluated many times.
        """
        layers = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=False)):
            if index is not None:
                w, b = w[index], b[index]
            if i == 0:
                w = w * (self.input_mask if index is None else self.input_mask[index])
            layers.append((w, b))
        return layers

    def apply(self, layers: list[tuple[Tensor, Tensor]], x: Tensor) -> Tensor:
        r"""Evaluates the networks whose weights :meth:`subset` returned, on ``x`` :math:`(M', n_0, N)`."""
        h = x
        for i, (w, b) in enumerate(layers):
            h = torch.baddbmm(b, w, h)
            if i < len(layers) - 1:
                # In place when no graph is recorded: fresh buffers cost page faults on CPU.
                h = self.activation(h) if torch.is_grad_enabled() else self.activation(h, inplace=True)
        return h

    def forward(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        r"""Evaluates the networks.

        Arguments:
            x: Inputs with shape :math:`(M', n_0, N)`: row :math:`i` goes to network ``index[i]``
                (or to network :math:`i` when ``index`` is ``None``, :math:`M' = M`).
            index: Optional network indices with shape :math:`(M',)`.

        Returns:
            Outputs with shape :math:`(M', n_{out}, N)`.
        """
        return self.apply(self.subset(index), x)
