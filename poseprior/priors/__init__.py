"""The registered priors. Importing this package fills the registry, one explicit import each."""

from .gaussian import GaussianPrior

__all__ = ["GaussianPrior"]
