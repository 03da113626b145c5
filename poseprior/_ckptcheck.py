"""Validation of an untrusted checkpoint before and while its prior is built (used by :mod:`poseprior.hub`).

The config must name only constructor parameters, with JSON values of the annotated types; the
prior is built under an allocation cap (every tensor factory call sized on the meta device first);
the weights must have the built prior's names, shapes, dtype kinds and finite values. Every
failure is a :class:`~poseprior.errors.CheckpointError` naming the file (``source``) and the field
or tensor.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.overrides import TorchFunctionMode

from .errors import CheckpointError
from .formats.layouts import JointLayout

if TYPE_CHECKING:
    from .base import PosePrior


JSON_KINDS = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "list",
    dict: "object",
    type(None): "null",
}


def config_kwargs(cls: type[PosePrior], config: dict[str, Any], source: str) -> dict[str, Any]:
    """The constructor arguments of a config, checked against ``cls.__init__``'s parameters and types."""
    try:
        signature = inspect.signature(cls.__init__, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # unresolvable annotations: names and defaults only
        signature = inspect.signature(cls.__init__)
    params = {
        p.name: p
        for p in list(signature.parameters.values())[1:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    unknown = sorted(config.keys() - params.keys())
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        raise CheckpointError(
            f"{source!r}: config field(s) {unknown} are not parameters of {cls.__name__} (its parameters: "
            f"{sorted(params)}); the checkpoint was written by another version of the prior, or edited"
        )
    missing = [n for n, p in params.items() if p.default is p.empty and n not in config]
    if missing:
        raise CheckpointError(
            f"{source!r}: the config lacks the required field(s) {missing} of {cls.__name__}"
        )
    kwargs = {}
    for name, value in config.items():
        annotation = params[name].annotation if name in params else Any
        if not _fits(value, annotation):
            kind = JSON_KINDS.get(type(value), type(value).__name__)
            raise CheckpointError(
                f"{source!r}: config field {name!r} must be {_describe(annotation)} for {cls.__name__}, got "
                f"{value!r} (a JSON {kind}); the checkpoint is corrupt or was edited"
            )
        kwargs[name] = value
        if isinstance(value, dict) and _admits(annotation, JointLayout):
            try:
                kwargs[name] = JointLayout(value["name"], tuple(value["joints"]), tuple(value["parents"]))
            except ValueError as e:
                raise CheckpointError(
                    f"{source!r}: config field {name!r} is not a valid layout: {e}"
                ) from None
    return kwargs


def _fits(value: object, annotation: object) -> bool:
    """Whether a JSON value can be the argument of a parameter annotated ``annotation``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if annotation in (None, type(None)):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation in (int, float, str):
        kinds = {int: (int,), float: (int, float), str: (str,)}[annotation]
        return isinstance(value, kinds) and not isinstance(value, bool)
    if annotation is JointLayout:
        return (
            isinstance(value, dict)
            and value.keys() == {"name", "joints", "parents"}
            and isinstance(value["name"], str)
            and _fits(value["joints"], list[str])
            and _fits(value["parents"], list[int])
        )
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        item = next((a for a in args if a is not Ellipsis), Any)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True  # Any, a string annotation, another type: the constructor checks it


def _admits(annotation: object, kind: type) -> bool:
    return annotation is kind or kind in typing.get_args(annotation)


def _describe(annotation: object) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (list, tuple, Sequence):
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if annotation is JointLayout:
        return 'a layout {"name", "joints", "parents"}'
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


class _OverCap(Exception):
    def __init__(self, created: int) -> None:
        super().__init__(created)
        self.created = created


class _AllocationCap(TorchFunctionMode):
    """Refuses tensor factory calls once the values they create would exceed ``cap``.

    Each factory call is sized on the meta device before it runs, so a call over the cap is refused
    without allocating. Only factories are counted (parameters are created by them; other ops
    mostly derive tensors of the same size), hence the exact count of the built prior afterwards.
    """

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap, self.created = cap, 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func not in _FACTORIES:
            return func(*args, **kwargs)
        try:
            size = func(*args, **{**kwargs, "device": torch.device("meta")}).numel()
        except (RuntimeError, TypeError, ValueError, NotImplementedError):  # cannot be sized: count it after
            size = None
        if size is not None and self.created + size > self.cap:
            raise _OverCap(self.created + size)
        out = func(*args, **kwargs)
        self.created += out.numel() if size is None else size
        if self.created > self.cap:
            raise _OverCap(self.created)
        return out


_FACTORIES = frozenset(
    {
        torch.empty,
        torch.empty_strided,
        torch.zeros,
        torch.ones,
        torch.full,
        torch.eye,
        torch.rand,
        torch.randn,
        torch.randint,
        torch.randperm,
        torch.arange,
        torch.linspace,
        torch.logspace,
        torch.tensor,
        torch.Tensor.new_empty,
        torch.Tensor.new_zeros,
        torch.Tensor.new_ones,
        torch.Tensor.new_full,
        torch.Tensor.new_tensor,
    }
)


def construct(
    cls: type[PosePrior], kwargs: dict[str, Any], source: str, max_parameters: int | None
) -> PosePrior:
    """``cls(**kwargs)``, refused before it creates more than ``max_parameters`` tensor values."""
    try:
        with contextlib.nullcontext() if max_parameters is None else _AllocationCap(max_parameters):
            prior = cls(**kwargs)
        count = sum(t.numel() for t in prior.state_dict().values())
    except _OverCap as e:
        count = e.created
    except (TypeError, ValueError, KeyError) as e:
        named = [k for k in kwargs if re.search(rf"\b{re.escape(k)}\b", str(e))]  # fields it names
        where = "the config"
        if named:
            where = f"config field {named[0]!r}" if len(named) == 1 else f"config fields {named}"
        raise CheckpointError(f"{source!r}: {where} does not build a {cls.__name__}: {e}") from None
    if max_parameters is not None and count > max_parameters:
        sizes = {k: v for k, v in kwargs.items() if type(v) is int}
        raise CheckpointError(
            f"{source!r}: the config asks for a {cls.__name__} of more than {max_parameters:,} tensor values "
            f"(max_parameters; at least {count:,} with {sizes}). poseprior refuses it before allocating, so "
            "that an untrusted checkpoint cannot exhaust memory; if you trust it, load it with "
            "max_parameters=None"
        )
    return prior


def check_weights(prior: PosePrior, state: dict[str, torch.Tensor], source: str) -> None:
    """Names, shapes, dtype kinds and finiteness of the weights, against the prior built from the config."""
    own = prior.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source!r}: the weights do not match a {type(prior).__name__} built from its config "
            f"(missing: {missing[:5]}, unexpected: {unexpected[:5]}, wrong shape: {wrong[:5]})"
        )
    for name in sorted(own):
        want, got = own[name].dtype, state[name].dtype
        if _dtype_kind(want) != _dtype_kind(got):  # any float precision is kept; bool/int exactly
            raise CheckpointError(
                f"{source!r}: tensor {name!r} is stored as {got}, but a {type(prior).__name__} holds it as "
                f"{_dtype_kind(want)}; the weights were converted or edited. Re-export them from the prior "
                "with prior.save()"
            )
        if got.is_floating_point and not bool(torch.isfinite(state[name]).all()):
            bad = int((~torch.isfinite(state[name])).sum())
            raise CheckpointError(
                f"{source!r}: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf) among "
                f"{state[name].numel()}; the weights are broken (a diverged training run?). "
                "Restore or retrain them"
            )


def _dtype_kind(dtype: torch.dtype) -> str:
    return "a floating dtype" if dtype.is_floating_point else str(dtype)
