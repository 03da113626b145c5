"""The registry of priors: ``register_prior``, ``create``, ``list_priors``, ``prior_class``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import UnknownPriorError

if TYPE_CHECKING:
    from .base import PosePrior

_PRIORS: dict[str, type[PosePrior]] = {}
T = TypeVar("T", bound="type[PosePrior]")


def register_prior(name: str) -> Callable[[T], T]:
    """Class decorator registering a :class:`~poseprior.PosePrior` under a snake_case ``name``."""
    if not name.isidentifier() or name.lower() != name:
        raise ValueError(f"prior names are snake_case identifiers, got {name!r}")

    def decorator(cls: T) -> T:
        if name in _PRIORS and _PRIORS[name] is not cls:
            raise ValueError(f"a prior named {name!r} is already registered ({_PRIORS[name].__qualname__})")
        cls.name = name
        _PRIORS[name] = cls
        return cls

    return decorator


def _ensure_loaded() -> None:
    from . import priors  # noqa: F401  (importing the package fills the registry)


def list_priors(pattern: str = "*") -> list[str]:
    """The names of the registered priors matching the fnmatch ``pattern``, sorted."""
    _ensure_loaded()
    return sorted(n for n in _PRIORS if fnmatch.fnmatch(n, pattern))


def prior_class(name: str) -> type[PosePrior]:
    """The class registered under ``name``; raises a ``KeyError`` suggesting the closest names."""
    _ensure_loaded()
    try:
        return _PRIORS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _PRIORS, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownPriorError(
            f"unknown prior {name!r}; registered priors: {', '.join(sorted(_PRIORS))}.{hint}"
        ) from None


def create(name: str, **kwargs: Any) -> PosePrior:
    """A new, unfitted prior: ``create("gaussian", layout="body")``."""
    return prior_class(name)(**kwargs)
