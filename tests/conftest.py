"""Shared fixtures: --dtype/--device options (float64 by default) and seeded data."""

from __future__ import annotations

import os

import pytest
import torch
from contract import synthetic_poses  # noqa: F401  (re-exported for the tests that import it from here)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--dtype", default="float64", choices=["float32", "float64"])
    parser.addoption("--device", default="cpu")


@pytest.fixture
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return getattr(torch, request.config.getoption("--dtype"))


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.config.getoption("--device"))


@pytest.fixture
def one_thread() -> object:
    """Tiny models: on a busy machine, hand-offs between intra-op threads cost more than the work
    itself (measured 10x slower with 2 threads on a loaded 2-core machine). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
