"""poseprior.formats.convert: layouts of stored poses (what ``poseprior convert`` does to a file)."""

from __future__ import annotations

import pytest
import torch

from poseprior.errors import ShapeError
from poseprior.formats.convert import convert_layout, detect_layout


def test_detect_layout_by_joint_count() -> None:
    assert [detect_layout(n) for n in (52, 55, 53, 24, 21)] == ["smplh", "smplx", "smplx53", "smpl", "body"]
    with pytest.raises(ShapeError, match="cannot tell the layout of poses with 7 joints.*smplx53"):
        detect_layout(7)


def test_convert_layout_uses_the_dedicated_adapters_and_refuses_to_lose_motion() -> None:
    x = 0.1 * torch.randn(3, 53, 3, generator=torch.Generator().manual_seed(0))
    y = convert_layout(x, "smplx53", "smplx")
    assert y.shape == (3, 55, 3) and not y[:, 23:25].any()  # the eyes, zero in SMPL-X order
    torch.testing.assert_close(convert_layout(y, "smplx", "smplx53"), x)
    lost = r"drops joint\(s\) that are not zero: pelvis, jaw.*drop_nonzero=True"
    with pytest.raises(ShapeError, match=lost):
        convert_layout(x, "smplx53", "body")
    torch.testing.assert_close(convert_layout(x, "smplx53", "body", drop_nonzero=True), x[:, 1:22])
    with pytest.raises(ShapeError, match='missing="zero"'):
        convert_layout(x[:, 1:22], "body", "smplh")
    assert convert_layout(x[:, 1:22], "body", "smplh", missing="zero").shape == (3, 52, 3)
