"""Metrics on known answers."""

from __future__ import annotations

import math

import pytest
import torch

import poseprior
from poseprior import metrics


def test_nll_and_bpd_match_log_prob(gen: torch.Generator) -> None:
    x = 0.3 * torch.randn(300, 15, 3, generator=gen)
    prior = poseprior.create("gaussian", layout="left_hand").fit(x)
    nll = metrics.nll(prior, x, batch_size=64)
    assert nll == pytest.approx(float(-prior.log_prob(x).mean().detach()), rel=1e-5)
    assert metrics.bits_per_dim(prior, x) == pytest.approx(nll / (45 * math.log(2)), rel=1e-6)
    with pytest.raises(ValueError, match="got 0 poses"):
        metrics.nll(prior, x[:0])
    with pytest.raises(TypeError, match="not invertible"):
        metrics.round_trip_error(prior, x)


def test_frechet_distance_known_answer(gen: torch.Generator) -> None:
    a = torch.randn(20000, 2, generator=gen, dtype=torch.float64)
    b = a * 2.0 + torch.tensor([3.0, 0.0], dtype=torch.float64)
    # N(0, I) vs N((3, 0), 4I): |mu|^2 + tr(I + 4I - 2 * 2I) = 9 + 2 = 11.
    assert metrics.frechet_distance(a, b) == pytest.approx(11.0, rel=0.03)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_precision_recall_and_nearest(gen: torch.Generator) -> None:
    data = torch.randn(500, 3, generator=gen, dtype=torch.float64)
    same = torch.randn(500, 3, generator=gen, dtype=torch.float64)
    far = same + 100.0
    p, r = metrics.precision_recall(same, data)
    assert p > 0.8 and r > 0.8
    assert metrics.precision_recall(far, data) == (0.0, 0.0)
    assert metrics.nearest_distance(data[:10], data) == 0.0
    assert metrics.nearest_distance(far, data) > 150.0


def test_apd_in_centimetres() -> None:
    zero = torch.zeros(2, 21, 3)
    assert metrics.apd(zero) == 0.0
    bent = zero.clone()
    bent[1, 17, 1] = -math.pi / 2  # left elbow bent 90 degrees: only the wrist moves
    forearm = 0.146 * 1.70  # the skeleton's forearm length in metres
    expected = forearm * math.sqrt(2) / 22 * 100
    assert metrics.apd(bent) == pytest.approx(expected, rel=1e-4)
