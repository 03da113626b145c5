"""The registry: names, creation, errors, and a light package import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import poseprior
from poseprior import UnknownPriorError
from poseprior.registry import register_prior


def test_list_and_create() -> None:
    assert "gaussian" in poseprior.list_priors()
    assert poseprior.list_priors("gauss*") == ["gaussian"]
    prior = poseprior.create("gaussian", layout="right_hand", covariance="diagonal")
    assert prior.name == "gaussian" and prior.layout.name == "right_hand"
    assert poseprior.prior_class("gaussian") is type(prior)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(KeyError, match="unknown prior 'gausian'.*Did you mean 'gaussian'"):
        poseprior.create("gausian")
    with pytest.raises(UnknownPriorError, match="unknown joint layout 'bodyy'.*Did you mean 'body'"):
        poseprior.create("gaussian", layout="bodyy")


def test_duplicates_and_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_prior("gaussian")
        class Other(poseprior.PosePrior):  # noqa: F841
            pass

    with pytest.raises(ValueError, match="snake_case"):
        register_prior("Bad-Name")


def test_import_is_light() -> None:
    code = (
        "import sys, poseprior; poseprior.list_priors();"
        "heavy = [m for m in ('pytorch_lightning', 'lightning', 'smplx', 'huggingface_hub', 'matplotlib')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
