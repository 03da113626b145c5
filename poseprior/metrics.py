r"""Metrics shared by the command line, the benchmarks and the docs: pure functions.

Every density metric is over the prior's modelled values: NLL in nats per pose, and bits per
dimension :math:`\mathrm{NLL} / (D \ln 2)` with :math:`D` = ``prior.dim``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import PosePrior


@torch.no_grad()
def nll(prior: PosePrior, x: Tensor, batch_size: int = 4096) -> float:
    r"""Mean negative log-likelihood in nats per pose of poses with shape :math:`(N, J, 3)`."""
    if x.shape[0] == 0:
        raise ValueError("nll: got 0 poses; need at least one")
    total = sum(float(-prior.log_prob(x[i : i + batch_size]).sum()) for i in range(0, x.shape[0], batch_size))
    return total / x.shape[0]


def bits_per_dim_of(nll: float, dim: int) -> float:
    r"""Bits per dimension of an NLL in nats per pose over :math:`D` dimensions:
    :math:`\mathrm{NLL} / (D \ln 2)`."""
    return nll / (dim * math.log(2.0))


def bits_per_dim(prior: PosePrior, x: Tensor, batch_size: int = 4096) -> float:
    r"""Bits per dimension of the density, :math:`\mathrm{NLL} / (D \ln 2)` with :math:`D` = ``prior.dim``."""
    return bits_per_dim_of(nll(prior, x, batch_size), prior.dim)


@torch.no_grad()
def broad_nll(prior: PosePrior, x: Tensor) -> float:
    r"""NLL in nats per pose of ``prior``'s broad component alone (with its anatomical values), on poses
    :math:`(N, J, 3)`.

    What the prior would score if its learned model carried no mass: the reference a prior with a
    broad component must beat.
    """
    if prior.broad is None:
        raise ValueError(f"broad_nll: this {type(prior).__name__} has no broad component (broad_weight=0)")
    flat = x.reshape(x.shape[0], -1).to(prior.data_mean)
    lp = prior.broad.log_prob(flat)
    if prior.dim > prior.model_dim:
        lp = lp + prior.anatomy.log_prob(flat)
    return -float(lp.mean())


@torch.no_grad()
def round_trip_error(prior: PosePrior, x: Tensor) -> float:
    r"""Max absolute error of ``inverse(forward(x))`` for invertible priors (radians).

    Needs a prior with a ``round_trip`` method (the flows); raises ``TypeError`` otherwise.
    """
    if not hasattr(prior, "round_trip"):
        raise TypeError(f"{type(prior).__name__} is not invertible: it has no round_trip method")
    return float((prior.round_trip(x) - x).abs().max())


@torch.no_grad()
def sample_statistics(samples: Tensor, data: Tensor) -> dict[str, Tensor]:
    r"""Per-value mean and standard deviation of samples vs. data, both :math:`(N, J, 3)`.

    Returns ``sample_mean``, ``data_mean``, ``sample_std``, ``data_std`` (each :math:`(J, 3)`),
    and the scalars ``mean_abs_err`` / ``std_abs_err`` averaged over values (radians).
    """
    out = {
        "sample_mean": samples.mean(0),
        "data_mean": data.mean(0),
        "sample_std": samples.std(0),
        "data_std": data.std(0),
    }
    out["mean_abs_err"] = (out["sample_mean"] - out["data_mean"]).abs().mean()
    out["std_abs_err"] = (out["sample_std"] - out["data_std"]).abs().mean()
    return out


# ---------------------------------------------------------------------------- sample quality
def _body_joints(poses: Tensor) -> Tensor:
    from .kinematics import forward_kinematics

    return forward_kinematics(poses)


@torch.no_grad()
def apd(samples: Tensor) -> float:
    r"""Average pairwise distance of samples, in cm: the mean over all pairs of the mean per-joint
    Euclidean distance between the 22 body joints (built-in skeleton, root at the origin).

    Arguments:
        samples: Body poses (layout ``"body"``) with shape :math:`(N, 21, 3)`, :math:`N \ge 2`.
    """
    j = _body_joints(samples.double())  # (N, 22, 3)
    n = j.shape[0]
    d = (j.unsqueeze(0) - j.unsqueeze(1)).norm(dim=-1).mean(-1)  # (N, N)
    return float(d.sum() / (n * (n - 1))) * 100.0


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""Fréchet distance between Gaussians fitted to two sets of vectors (FID formula).

    Arguments:
        a: Vectors with shape :math:`(N, *)`, flattened to :math:`(N, D)`.
        b: Vectors with shape :math:`(M, *)`.
    """
    x = a.reshape(a.shape[0], -1).double()
    y = b.reshape(b.shape[0], -1).double()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = torch.cov(x.T), torch.cov(y.T)
    # tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2), a symmetric PSD matrix: eigenvalues instead of
    # sqrtm, so the constant values (singular covariances) of pose data need no special case.
    e, v = torch.linalg.eigh(s1)
    root = (v * e.clamp_min(0).sqrt()) @ v.T
    trace_sqrt = torch.linalg.eigvalsh(root @ s2 @ root).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * trace_sqrt)


def _kth_nn_radius(x: Tensor, k: int) -> Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


@torch.no_grad()
def precision_recall(samples: Tensor, data: Tensor, k: int = 3) -> tuple[float, float]:
    r"""Improved precision and recall (Kynkäänniemi et al., 2019) with :math:`k`-NN balls.

    Precision is the fraction of samples inside the union of the data's :math:`k`-NN balls;
    recall the fraction of data inside the samples' balls. Both sets are flattened axis-angle
    vectors with shapes :math:`(N, *)` and :math:`(M, *)`.
    """
    s = samples.reshape(samples.shape[0], -1).double()
    d = data.reshape(data.shape[0], -1).double()
    rs, rd = _kth_nn_radius(s, k), _kth_nn_radius(d, k)
    dist = torch.cdist(s, d)  # (N, M)
    precision = (dist <= rd.unsqueeze(0)).any(1).double().mean()
    recall = (dist.T <= rs.unsqueeze(0)).any(1).double().mean()
    return float(precision), float(recall)


@torch.no_grad()
def nearest_distance(samples: Tensor, train: Tensor, batch_size: int = 1024) -> float:
    r"""Mean Euclidean distance (radians, flattened axis-angle) from each sample to its nearest
    training pose: small values mean samples copy the training set, large ones implausible poses."""
    s = samples.reshape(samples.shape[0], -1).double()
    t = train.reshape(train.shape[0], -1).double()
    mins = [
        torch.cdist(s[i : i + batch_size], t, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
        for i in range(0, s.shape[0], batch_size)
    ]
    return float(torch.cat(mins).mean())
