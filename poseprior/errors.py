"""Exceptions raised by poseprior.

Every error is a :class:`PosePriorError`, and also a subclass of the built-in exception that
callers would naturally catch (``ValueError`` for bad input, ``KeyError`` for unknown names, ...).
"""

from __future__ import annotations


class PosePriorError(Exception):
    """Base class of every poseprior exception."""


class ShapeError(PosePriorError, ValueError):
    """A tensor has the wrong shape for the prior, layout or rotation representation."""


class ValueCheckError(PosePriorError, ValueError):
    """A tensor has invalid values (NaN, inf) or a wrong dtype/device."""


class NotInitializedError(PosePriorError, RuntimeError):
    """A prior with data-dependent initialization was used before ``fit`` or ``initialize``."""


class FitDivergedError(PosePriorError, RuntimeError):
    """Training produced a non-finite loss (the optimization diverged; the data was finite)."""


class UnknownPriorError(PosePriorError, KeyError):
    """A registry name (prior, layout, pretrained checkpoint) does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(PosePriorError, ValueError):
    """A checkpoint folder is missing, corrupt, of another prior, or of an unsupported version."""


class DataError(PosePriorError, ValueError):
    """A pose data file is missing, corrupt, truncated, of an unknown layout, or holds NaN/inf."""
