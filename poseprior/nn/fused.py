r"""The fused frozen density of a MAF stack (``global_flow``'s regularizer fast path).

:class:`FusedMAFDensity` folds a :class:`~poseprior.nn.flows.TransformStack` of
``[ActNorm, BoundedMaskedAffineAutoregressive, FixedPermutation] * K`` and an affine input map into
a few named tensors (:class:`FusedTensors`), and :func:`fused_maf_log_prob`, a pure function of
them, computes the log-density and a hand-written per-pose gradient in one pass, with independent
Gaussians mixed in or multiplied in (:class:`FusedParts`). Tested against the module path in
``tests/test_nn_flows.py`` and ``tests/test_global_flow.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .flows import ActNorm, BoundedMaskedAffineAutoregressive, FixedPermutation, TransformStack
from .independent import GaussianConstants

__all__ = [
    "FusedBlock",
    "FusedMAFDensity",
    "FusedParts",
    "FusedResidual",
    "FusedTensors",
    "fused_maf_log_prob",
]


class FusedParts(NamedTuple):
    r"""What :func:`fused_maf_log_prob` adds to the flow's density, each part optional.

    ``broad``: an independent Gaussian mixed in, its ``log_const`` including the log of its
    mixture weight; ``log_weight_flow``: the log of the flow's mixture weight; ``anatomy``: an
    independent Gaussian multiplied in (its values are not the flow's).
    """

    broad: GaussianConstants | None = None
    log_weight_flow: float = 0.0
    anatomy: GaussianConstants | None = None


NO_PARTS = FusedParts()
"""Nothing added to the flow's density."""


class FusedResidual(NamedTuple):
    """One residual block of a fused MADE: ``h + W2 relu(W1 relu(h) + b1) + b2`` (each W and its
    transpose, a view: one copy of the weights stays in cache)."""

    b1: Tensor
    w1_t: Tensor
    w1: Tensor
    b2: Tensor
    w2_t: Tensor
    w2: Tensor


class FusedBlock(NamedTuple):
    r"""One fused MAF layer: the MADE's first layer, residual blocks and output layer, then the
    next ActNorm's log-scale ``log_e`` (zeros for the last layer).

    The output layer's rows are the scale rows (already divided by ``max_log_scale``), then the
    shift rows (with the next ActNorm folded in, divided by the input bound :math:`c`); the first
    layer's weights are multiplied by :math:`c`.
    """

    b0: Tensor
    w0_t: Tensor
    w0: Tensor
    inner: tuple[FusedResidual, ...]
    b_out: Tensor
    w_out_t: Tensor
    w_out: Tensor
    log_e: Tensor


class FusedTensors(NamedTuple):
    r"""Everything :func:`fused_maf_log_prob` computes with: the input map, constants and the layers.

    The kernel carries the flow's values divided by the MADE input bound :math:`c` (1 without
    one), :math:`\tilde a = a / c`: the MADE's input :math:`c \tanh(a / c)` is then one ``tanh``
    (the :math:`c` is folded into its first layer), and the map, shift rows and base density are
    rescaled to match. The scalars are Python floats (operation arguments, not tensors).
    """

    matrix: Tensor  # (D_in, D): the input map and the first ActNorm, divided by c
    matrix_t: Tensor  # its transpose (a view)
    offset: Tensor  # (D,)
    const: Tensor  # 0-d: the normalizing constant and every ActNorm's log-det
    bound_t: Tensor  # 0-d: max_log_scale (an operation's input)
    one: Tensor  # 0-d: 1
    blocks: tuple[FusedBlock, ...]
    bound: float  # max_log_scale b
    base_scale: float  # c**2: the base density is -c**2 |a~|^2 / 2


def _check_stack(stack: TransformStack) -> tuple[list, list, list]:
    """The ActNorm, MAF and permutation layers of ``stack``; raises if it cannot be fused."""
    layers = list(stack.transforms)
    if (
        not layers
        or len(layers) % 3
        or not all(
            isinstance(a, ActNorm)
            and isinstance(m, BoundedMaskedAffineAutoregressive)
            and isinstance(p, FixedPermutation)
            for a, m, p in zip(layers[0::3], layers[1::3], layers[2::3], strict=False)
        )
    ):
        raise TypeError(
            "FusedMAFDensity needs [ActNorm, BoundedMaskedAffineAutoregressive, FixedPermutation] * K"
        )
    actnorms, mafs, perms = layers[0::3], layers[1::3], layers[2::3]
    bound, depth = float(mafs[0].max_log_scale), len(mafs[0].autoregressive_net.blocks)
    if any(
        float(m.max_log_scale) != bound
        or len(m.autoregressive_net.blocks) != depth
        or m.input_bound != mafs[0].input_bound
        for m in mafs
    ):
        raise ValueError(
            "FusedMAFDensity needs the same max_log_scale, input_bound and MADE depth in every layer"
        )
    return actnorms, mafs, perms


class FusedMAFDensity:
    r"""A frozen, fused ``x -> log N(f(x A + c) | 0, I) + log|det|`` for a MAF stack, with its gradient.

    For a :class:`TransformStack` of ``[ActNorm, BoundedMaskedAffineAutoregressive,
    FixedPermutation] * K`` (what :func:`build_flow` makes with ``transform="maf"``) after a fixed
    affine input map :math:`x \mapsto x A + c` (:math:`A` with shape ``(D_in, D)``), the same
    density with far fewer operations, for batch-1 regularizer use:

    * the input map and the first ActNorm are one matrix product; every later ActNorm is folded
      into the previous layer's scale (:math:`e^{s + \log e}`) and shift network (its last rows);
    * the permutations are folded into the MADE weights (columns of the first layer, rows of the
      last), so no feature is ever gathered: the latent comes out permuted, and the standard
      normal base only needs :math:`\|z\|^2`;
    * the ``1 / max_log_scale`` of the soft clamp is folded into the scale rows, scale and shift
      come from one matrix product, and the MADE masks are applied once;
    * :meth:`log_prob_and_grad` also returns each pose's gradient :math:`\nabla_x \log p(x_n)`
      from a hand-written backward pass (no autograd graph; the poses are independent, so any
      weighted sum's gradient is ``w[:, None] * grad``).

    The constants are computed in float64 from the modules' current values and stored in their
    dtype: build a new one after any weight change (the priors key a cache on the weights'
    versions). The log-density is mathematically identical to the module path. The computation
    is the pure function :func:`fused_maf_log_prob` of :attr:`tensors` (what ``torch.compile``
    can compile once for every weight value).
    """

    def __init__(self, stack: TransformStack, matrix: Tensor, offset: Tensor, const: float) -> None:
        actnorms, mafs, perms = _check_stack(stack)
        dtype, device, f64 = actnorms[0].loc.dtype, actnorms[0].loc.device, torch.float64
        d = self.features = actnorms[0].features
        bound = self.bound = float(mafs[0].max_log_scale)
        self.input_bound = mafs[0].input_bound
        c = 1.0 if self.input_bound is None else self.input_bound  # values carried as a / c

        def cast(t: Tensor) -> Tensor:
            return t.to(dtype).contiguous()

        with torch.no_grad():
            log_e = [-a.log_scale.to(f64) for a in actnorms]  # log of each ActNorm's scale e
            locs = [a.loc.to(f64) for a in actnorms]
            # Storage order: logical feature i of block k sits at column order[k][i].
            order = [torch.arange(d, device=device)]
            for p in perms[:-1]:
                order.append(order[-1][p.indices])
            inv = [torch.argsort(o) for o in order]
            e0 = log_e[0].exp()  # order[0] is the identity
            folded = matrix.to(f64) * (e0 / c)
            const = float(const) + float(sum(le.sum() for le in log_e))
            blocks = []
            for k, maf in enumerate(mafs):
                linears = maf._linears()
                weights = [m.weight.to(f64) * m.mask.to(f64) for m in linears]
                biases = [m.bias.to(f64) for m in linears]
                w0 = weights[0][:, inv[k]] * c
                wf, bf = weights[-1], biases[-1]
                wu, bu = wf[0::2][inv[k]] / bound, bf[0::2][inv[k]] / bound
                wt, bt = wf[1::2][inv[k]], bf[1::2][inv[k]]
                if k + 1 < len(mafs):  # fold the next ActNorm, in this block's storage order
                    le = log_e[k + 1][inv[k + 1]]
                    e, loc = le.exp(), locs[k + 1][inv[k + 1]]
                    wt, bt = wt * e[:, None], (bt - loc) * e
                else:
                    le = torch.zeros(d, dtype=f64, device=device)
                wt, bt = wt / c, bt / c
                wout = torch.cat([wu, wt])  # (2D, H): scale rows, then shift rows
                inner = []
                for i, (w1, w2) in enumerate(zip(weights[1:-1:2], weights[2:-1:2], strict=False)):
                    w1, w2 = cast(w1), cast(w2)  # (the transposes are views: no second copy)
                    b1, b2 = cast(biases[1 + 2 * i]), cast(biases[2 + 2 * i])
                    inner.append(FusedResidual(b1, w1.T, w1, b2, w2.T, w2))
                w0, wout, b0, b_out = cast(w0), cast(wout), cast(biases[0]), cast(torch.cat([bu, bt]))
                blocks.append(FusedBlock(b0, w0.T, w0, tuple(inner), b_out, wout.T, wout, cast(le)))
            scalars = (torch.tensor(v, dtype=dtype, device=device) for v in (const, bound, 1.0))
            folded = cast(folded)
            self.tensors = FusedTensors(
                folded,
                folded.T,
                cast((offset.to(f64) - locs[0]) * (e0 / c)),
                *scalars,
                tuple(blocks),
                bound,
                c * c,
            )

    @staticmethod
    def sources(stack: TransformStack) -> list[tuple[dict, str]]:
        """Where every tensor a :class:`FusedMAFDensity` of ``stack`` is built from lives.

        ``(module._parameters or module._buffers, name)`` pairs, so that ``d[name]`` finds the
        current tensor even after ``load_state_dict(..., assign=True)`` replaced it.
        """
        out: list[tuple[dict, str]] = []
        for t in stack.transforms:
            if isinstance(t, ActNorm):
                out += [(t._parameters, "loc"), (t._parameters, "log_scale")]
            elif isinstance(t, BoundedMaskedAffineAutoregressive):
                for m in t._linears():
                    out += [(m._parameters, "weight"), (m._parameters, "bias"), (m._buffers, "mask")]
            elif isinstance(t, FixedPermutation):
                out.append((t._buffers, "indices"))
        return out

    def _args(self, grad: bool) -> tuple:
        return self.tensors, self.features, self.input_bound, grad

    def log_prob(self, x: Tensor, impl: Callable | None = None, parts: FusedParts = NO_PARTS) -> Tensor:
        """(N, D_in) -> (N,) log-density.

        ``impl`` replaces :func:`fused_maf_log_prob` (a compiled copy); ``parts`` adds independent
        Gaussians in the same pass (see :func:`fused_maf_log_prob`).
        """
        impl = impl or fused_maf_log_prob
        with torch.inference_mode():  # no autograd bookkeeping per operation
            lp = impl(x.detach(), *self._args(False), parts)[0]
        return lp.clone()  # a normal tensor: callers may modify it in place

    def log_prob_and_grad(
        self, x: Tensor, impl: Callable | None = None, parts: FusedParts = NO_PARTS
    ) -> tuple[Tensor, Tensor]:
        """(N, D_in) -> the (N,) log-density and its (N, D_in) gradient with respect to each row of ``x``.

        Both are computed under ``torch.inference_mode`` (no autograd bookkeeping per operation)
        and are inference tensors: use them as inputs, clone them to modify them in place.
        """
        impl = impl or fused_maf_log_prob
        with torch.inference_mode():  # (x detached: one compiled graph whether or not x requires grad)
            return impl(x.detach(), *self._args(True), parts)


_relu_backward = torch.ops.aten.threshold_backward.default  # grad * (input > threshold)


def fused_maf_log_prob(
    x: Tensor,
    tensors: FusedTensors,
    features: int,
    input_bound: float | None,
    grad: bool,
    parts: FusedParts = NO_PARTS,
) -> tuple[Tensor, Tensor | None]:
    r"""The computation of :class:`FusedMAFDensity`: log-density and (if ``grad``) per-row gradient.

    With ``parts.broad``, the density is the mixture :math:`\log(e^{\log w_f + \log p_f(x)} +
    e^{\log w + \log \mathcal{N}(x)})` of the flow and the diagonal Gaussian, and the gradient is
    the responsibility-weighted sum of theirs; ``parts.anatomy`` adds an independent Gaussian's
    log-density and gradient; all in the same pass.
    """
    d, t, b = features, tensors, tensors.bound
    relu, addmm, mm = torch.relu, torch.addmm, torch.mm  # (locals: this runs ~130 tiny operations)
    a = addmm(t.offset, x, t.matrix)  # a / c (see FusedTensors)
    bounded = input_bound is not None
    acc = None
    saved = []
    for blk in t.blocks:
        th = torch.tanh(a) if bounded else None  # the MADE sees c tanh(a / c): c is in w0
        h = addmm(blk.b0, th if bounded else a, blk.w0_t)
        inner = []
        for r in blk.inner:
            u = addmm(r.b1, relu(h), r.w1_t)
            inner.append((h, u))
            h = addmm(r.b2, relu(u), r.w2_t).add_(h)
        out = addmm(blk.b_out, h, blk.w_out_t)
        w = torch.tanh(out[:, :d])
        es = torch.add(blk.log_e, w, alpha=b).exp_()
        y = torch.addcmul(out[:, d:], a, es)
        saved.append((a, th, inner, w, es))
        acc = w if acc is None else acc + w
        a = y
    # log N(z) + log|det| = -c^2 |a~|^2 / 2 + b sum(w) + const
    lp = torch.add(t.const, torch.addcmul(acc, a, a, value=-0.5 * t.base_scale / b).sum(-1), alpha=b)
    broad, anatomy = parts.broad, parts.anatomy
    if broad is not None:
        zs = torch.addcmul(broad.shift, x, broad.inv_scale)
        log_broad = torch.add(broad.log_const, zs.square().sum(-1), alpha=-0.5)
        lp_flow = lp + parts.log_weight_flow
        lp = torch.logaddexp(lp_flow, log_broad)
    if anatomy is not None:
        za = torch.addcmul(anatomy.shift, x, anatomy.inv_scale)
        lp = lp + torch.add(anatomy.log_const, za.square().sum(-1), alpha=-0.5)
    if not grad:
        return lp, None
    gy = a * -t.base_scale  # d/da~ of -c^2 |a~|^2 / 2
    for blk, (a, th, inner, w, es) in zip(reversed(t.blocks), reversed(saved), strict=False):
        ga = gy * es  # through y = a e^s + t, directly
        # d/du: (gy a e^s + 1) * b (1 - tanh^2): the scale term and the log-det term b sum(w).
        gu = torch.addcmul(t.one, ga, a).mul_(torch.addcmul(t.bound_t, w, w, value=-b))
        gh = mm(torch.cat([gu, gy], 1), blk.w_out)
        for r, (h, u) in zip(reversed(blk.inner), reversed(inner), strict=False):
            gu_ = _relu_backward(mm(gh, r.w2), u, 0)
            gh = gh.add_(_relu_backward(mm(gu_, r.w1), h, 0))
        if th is None:
            gy = addmm(ga, gh, blk.w0)
        else:  # through tanh(a~): times 1 - tanh^2
            gy = torch.addcmul(ga, mm(gh, blk.w0), torch.addcmul(t.one, th, th, value=-1.0))
    g = torch.mm(gy, t.matrix_t)
    if broad is not None:
        # d/dx of the mixture: r grad_flow + (1 - r) grad_broad, r the flow's responsibility and
        # grad_broad = -zs * inv_scale.
        r = torch.sigmoid(lp_flow - log_broad)[:, None]
        g = torch.lerp(zs.mul_(broad.neg_inv_scale), g, r)
    if anatomy is not None:
        g = g.addcmul_(za, anatomy.neg_inv_scale)
    return lp, g
