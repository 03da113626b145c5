r"""The :class:`PosePrior` contract shared by every prior.

Public methods validate their input once, flatten the batch dimensions and delegate to private
hooks (``_log_prob``, ``_sample``, ``_fit``, ``_initialize``, ``_training_loss``) that receive
checked tensors with shape :math:`(N, J, 3)`.

**Modelled dimensions.** A prior over a layout of :math:`J` joints sees :math:`3J` axis-angle
values. Values that are constant in the training data (eye joints, absent fingers, a joint the
capture system never moves) carry no density: they are *excluded* and recorded with their constant
value. ``dim`` (:math:`D`) counts the modelled values; ``log_prob`` is a density over those
:math:`D` values only, and bits per dimension are :math:`\mathrm{NLL} / (D \ln 2)`. Which values
are excluded is decided once, by the first :meth:`PosePrior.fit` or :meth:`PosePrior.initialize`
(values whose standard deviation is at most ``constant_tol`` radians), or given explicitly as
``constant_dims``, and is saved with the checkpoint. Excluded values do not enter ``log_prob``;
samples hold their recorded constant.

**Broad component.** With ``broad_weight`` :math:`w > 0` the density is a defensive mixture

.. math:: p(x) = (1 - w)\, p_{\mathrm{model}}(x) + w\, \mathcal{N}(x_{\mathrm{mod}} \mid \mu, \mathrm{diag}(s\sigma)^2)

with :math:`\mu, \sigma` the per-value mean and standard deviation of the training poses
(:math:`\sigma` floored at the prior's ``min_std``, 0.02 rad if it has none) and :math:`s` =
``broad_scale``. The broad component is fitted in closed form with the excluded values (it is
not trained; ``training_loss`` is the model's own), so a pose unlike the training data costs at
most :math:`-\log w` nats more than under independent per-value Gaussians, while poses like the
data lose at most :math:`-\log(1 - w)`. Flexible models overfit the actions they were trained
on; the leave-one-action-out protocol (``benchmarks/tune_defaults.py``) chose each prior's
default :math:`w`.
"""

from __future__ import annotations

import abc
import inspect
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._checks import check_like, check_pose
from .errors import CheckpointError, NotInitializedError, ShapeError
from .formats.layouts import LAYOUTS, JointLayout, get_layout


class PosePrior(nn.Module, abc.ABC):
    r"""A probability density over axis-angle poses of one joint layout.

    Arguments:
        layout: The joints modelled, a layout name such as ``"body"`` (21 joints), ``"left_hand"``
            (15) or ``"smplx"`` (55), or a :class:`~poseprior.formats.JointLayout`.
        constant_dims: Flat indices ``3 * joint + axis`` of the values excluded from the density,
            or ``None`` to detect the values constant in the data at the first ``fit``.
        constant_tol: Standard deviation (radians) at or below which a value counts as constant.
        broad_weight: Weight :math:`w \in [0, 1)` of the broad per-value Gaussian component
            (see the module docs); 0 disables it.
        broad_scale: Factor :math:`s \geq 1` on the broad component's standard deviations.
    """

    name: ClassVar[str] = ""
    """Registry name, set by :func:`~poseprior.register_prior`."""
    version: ClassVar[int] = 1
    """Version of this prior's parameterization; checkpoints of another version are refused."""
    has_rsample: ClassVar[bool] = False
    has_exact_log_prob: ClassVar[bool] = True
    requires_initialization: ClassVar[bool] = False
    iterative_fit: ClassVar[bool] = True
    default_layout: ClassVar[str] = "body"
    """The layout the command line uses for this prior unless told otherwise."""
    """True if ``fit`` trains by gradient descent (takes ``epochs``, ``val``, ...); False if closed form."""

    def __init__(
        self,
        layout: str | JointLayout = "body",
        *,
        constant_dims: Sequence[int] | None = None,
        constant_tol: float = 1e-6,
        broad_weight: float = 0.0,
        broad_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.layout = get_layout(layout)
        self.constant_tol = float(constant_tol)
        if not 0.0 <= float(broad_weight) < 1.0 or not float(broad_scale) >= 1.0:
            raise ValueError(
                f"need 0 <= broad_weight < 1 and broad_scale >= 1, got {broad_weight} and {broad_scale}"
            )
        self.broad_weight = float(broad_weight)
        self.broad_scale = float(broad_scale)
        n = 3 * len(self.layout)
        self.register_buffer("constant_values", torch.zeros(n))
        self.register_buffer("initialized", torch.tensor(not self.requires_initialization))
        if self.broad_weight > 0:  # the broad component over all 3J values; fitted by _resolve_constants
            self.register_buffer("broad_loc", torch.zeros(n))
            self.register_buffer("broad_inv_scale", torch.zeros(n))  # 0 at the excluded values
            self.register_buffer("broad_log_norm", torch.zeros(()))
        self._set_constant_dims(constant_dims)
        if self.broad_weight > 0:  # N(0, I) until fitted, like the models' own initial state
            self.broad_inv_scale.copy_(self.modelled.float())
            self.broad_log_norm.fill_(-0.5 * self.dim * math.log(2 * math.pi))

    # ------------------------------------------------------------------ description
    @property
    def event_shape(self) -> torch.Size:
        """The shape of one pose, :math:`(J, 3)`."""
        return torch.Size((len(self.layout), 3))

    @property
    def dim(self) -> int:
        r"""The number of modelled dimensions :math:`D` (:math:`3J` minus the excluded values)."""
        return int(self.modelled.sum())

    dof = dim

    @property
    def space(self) -> str:
        """What ``log_prob`` is a density on: Lebesgue measure on the modelled axis-angle values."""
        return f"axis_angle:{self.layout.name}:lebesgue"

    @property
    def modelled_mask(self) -> Tensor:
        """Boolean mask with shape :math:`(J, 3)`: True where the value enters the density."""
        return self.modelled.reshape(len(self.layout), 3)

    def excluded_names(self) -> list[str]:
        """The excluded values as ``"joint.axis"`` strings, e.g. ``"left_knee.y"``."""
        return [f"{self.layout.joints[i // 3]}.{'xyz'[i % 3]}" for i in self.constant_dims or []]

    def extra_repr(self) -> str:
        broad = f", broad_weight={self.broad_weight:g}, broad_scale={self.broad_scale:g}" if self.broad_weight else ""
        return f"layout={self.layout.name!r}, D={self.dim}{broad}"

    # ------------------------------------------------------------------ public API
    def log_prob(self, x: Tensor) -> Tensor:
        r"""Log-density of poses.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.

        Returns:
            The log-density over the modelled values, with shape :math:`(*)`. Differentiable
            with respect to ``x``.
        """
        x = self._check(x, "log_prob")
        self._check_initialized("log_prob")
        batch = x.shape[:-2]
        if x.dim() != 3:  # (no view node in the autograd graph for the usual (N, J, 3))
            x = x.reshape(-1, *self.event_shape)
        lp = self._mixture_log_prob(x)
        return lp if lp.shape == batch else lp.reshape(batch)

    def penalty(self, x: Tensor, per_dim: bool = False) -> Tensor:
        r"""Regularization term :math:`-\log p(x)` for use in an optimizer, with shape :math:`(*)`.

        With ``per_dim=True`` it is divided by :math:`D`, so that weights transfer between priors
        over different numbers of dimensions.
        """
        nll = -self.log_prob(x)
        return nll / self.dim if per_dim else nll

    def score(self, x: Tensor) -> float:
        """The mean log-likelihood of poses ``x`` with shape :math:`(N, J, 3)` (sklearn ``score``)."""
        with torch.no_grad():
            return float(self.log_prob(x).mean())

    @torch.no_grad()
    def sample(
        self, sample_shape: int | Sequence[int] = (), *, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Draws poses, with shape :math:`(*S, J, 3)`, without gradients.

        Arguments:
            sample_shape: The batch shape :math:`S` (an ``int`` means ``(n,)``).
            generator: The random generator; the global RNG is never used when one is given.
        """
        self._check_initialized("sample")
        shape = torch.Size((sample_shape,) if isinstance(sample_shape, int) else sample_shape)
        n = shape.numel()
        if n == 0:
            return self.constant_values.new_zeros(*shape, *self.event_shape)
        if self.broad_weight == 0:
            return self._sample(n, generator).reshape(*shape, *self.event_shape)
        broad = torch.rand(n, generator=generator, device="cpu") < self.broad_weight
        broad = broad.to(self.constant_values.device)
        k = int(broad.sum())
        x = self.constant_values.new_empty(n, *self.event_shape)
        if k < n:
            x[~broad] = self._sample(n - k, generator).to(x.dtype)
        if k > 0:
            x[broad] = self._broad_sample(k, generator)
        return x.reshape(*shape, *self.event_shape)

    def sample_and_log_prob(
        self, sample_shape: int | Sequence[int] = (), *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""Draws poses with shape :math:`(*S, J, 3)` and returns them with their log-density :math:`(*S)`.

        Without gradients. Flows override it to get the density on the way (no second pass).
        """
        x = self.sample(sample_shape, generator=generator)
        with torch.no_grad():
            return x, self.log_prob(x)

    def rsample(
        self, sample_shape: int | Sequence[int] = (), *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Like :meth:`sample`, differentiable with respect to the parameters (if ``has_rsample``)."""
        raise NotImplementedError(f"{type(self).__name__} has no reparameterized sampler (has_rsample=False)")

    def initialize(self, x: Tensor) -> None:
        r"""Data-dependent initialization from poses with shape :math:`(N, J, 3)`.

        Detects the constant values if ``constant_dims`` is ``None``. Never triggered by forward.
        """
        x = self._check_data(x, "initialize")
        self._resolve_constants(x)
        self._initialize(x)
        self.initialized.fill_(True)

    def fit(self, x: Tensor | Iterable[Tensor], **options: Any) -> PosePrior:
        r"""Fits the prior to poses with shape :math:`(N, J, 3)` and returns ``self``.

        ``x`` may also be an iterable of such tensors (e.g. a DataLoader), which is concatenated.
        The first call decides the excluded values (see the module docs). Priors that need a
        data-dependent initialization are initialized here when they are not yet. Other keyword
        arguments are the prior's training options (see its ``_fit``); ``val=`` poses enable early
        stopping where supported.
        """
        x = self._check_data(x, "fit")
        if "val" in options and options["val"] is not None:
            options["val"] = self._check_data(options["val"], "fit(val=...)")
        if self.requires_initialization and not bool(self.initialized):
            self.initialize(x)
        else:
            self._resolve_constants(x)
        self._fit(x, **options)
        return self

    def training_loss(self, x: Tensor) -> Tensor:
        """The scalar objective minimized by ``fit`` and by the Lightning trainer."""
        x = self._check(x, "training_loss")
        self._check_initialized("training_loss")
        return self._training_loss(x.reshape(-1, *self.event_shape))

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _log_prob(self, x: Tensor) -> Tensor:
        """x: (N, J, 3) validated -> (N,)."""

    @abc.abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        """-> (n, J, 3), excluded values set to their constants (see :meth:`_fill`)."""

    def _initialize(self, x: Tensor) -> None:  # noqa: B027  (optional hook)
        """Data-dependent initialization; x: (N, J, 3)."""

    def _training_loss(self, x: Tensor) -> Tensor:
        return -self._log_prob(x).mean()

    def _fit(self, x: Tensor, **options: Any) -> None:
        from ._fitloop import fit_adam

        fit_adam(self, x, **options)

    def _rebuild(self) -> None:  # noqa: B027  (optional hook)
        """Rebuilds the modules whose shapes depend on :attr:`dim`, after the first fit decided it."""

    # ------------------------------------------------------------------ helpers for hooks
    def _select(self, x: Tensor) -> Tensor:
        """(N, J, 3) -> (N, D): the modelled values."""
        return x.reshape(x.shape[0], -1)[:, self.modelled]

    def _fill(self, z: Tensor) -> Tensor:
        """(N, D) -> (N, J, 3): modelled values from ``z``, the others set to their constants."""
        out = self.constant_values.to(z.dtype).expand(z.shape[0], -1).clone()
        out[:, self.modelled] = z
        return out.reshape(z.shape[0], *self.event_shape)

    def _mixture_log_prob(self, x: Tensor) -> Tensor:
        """(N, J, 3) -> (N,): the whole density, the model's mixed with the broad component.

        A prior may override it to compute both in one fused pass (``global_flow`` does).
        """
        return self._mix(self._log_prob(x), x)

    def _mix(self, model_log_prob: Tensor, x: Tensor) -> Tensor:
        """(N,) model log-density and (N, J, 3) poses -> (N,) log-density of the mixture."""
        if self.broad_weight == 0:
            return model_log_prob
        # logsumexp, not logaddexp: logaddexp's second derivative is NaN once one side is
        # e^700 times the other (a pose far from the model's data), logsumexp's is not.
        terms = [model_log_prob + math.log1p(-self.broad_weight),
                 self._broad_log_prob(x) + math.log(self.broad_weight)]
        return torch.logsumexp(torch.stack(terms), 0)

    def _broad_log_prob(self, x: Tensor) -> Tensor:
        """(N, J, 3) -> (N,): log-density of the broad per-value Gaussian component.

        Over all :math:`3J` values with the inverse scale 0 at the excluded ones (no index
        selection: a few elementwise ops, cheap at batch 1 inside an optimizer loop).
        """
        z = (x.reshape(x.shape[0], -1) - self.broad_loc) * self.broad_inv_scale
        return self.broad_log_norm - 0.5 * z.square().sum(-1)

    def _broad_sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        """-> (n, J, 3) poses drawn from the broad component."""
        ref = self.broad_loc
        eps = torch.randn(n, self.dim, generator=generator, dtype=ref.dtype, device="cpu").to(ref.device)
        return self._fill(self._select(ref.unsqueeze(0)) + eps / self._select(self.broad_inv_scale.unsqueeze(0)))

    def _set_constant_dims(self, dims: Sequence[int] | None) -> None:
        n = 3 * len(self.layout)
        mask = torch.ones(n, dtype=torch.bool)
        if dims is not None:
            dims = sorted(int(d) for d in dims)
            if any(not 0 <= d < n for d in dims) or len(set(dims)) != len(dims):
                raise ValueError(f"constant_dims must be distinct indices in [0, {n}), got {dims}")
            if len(dims) == n:
                raise ValueError("constant_dims excludes every value: nothing would be modelled")
            mask[dims] = False
        self.constant_dims = dims
        if "modelled" in self._buffers:
            self.modelled = mask.to(self.modelled.device)
        else:
            self.register_buffer("modelled", mask)

    def _resolve_constants(self, x: Tensor) -> None:
        """Decides the excluded values from data the first time, and rebuilds if D changed."""
        flat = x.reshape(x.shape[0], -1)
        if self.constant_dims is None:
            std = flat.std(0) if flat.shape[0] > 1 else torch.zeros_like(flat[0])
            dims = (std <= self.constant_tol).nonzero().flatten().tolist()
            if len(dims) == flat.shape[1]:
                raise ShapeError(
                    f"fit: every value of the {flat.shape[0]} poses is constant; a density needs "
                    "varying data (give more or different poses)"
                )
            old = self.dim
            self._set_constant_dims(dims)
            if self.dim != old:
                self._rebuild()
        self.constant_values.copy_(flat.mean(0).to(self.constant_values) * ~self.modelled)
        if self.broad_weight > 0:
            v = flat.double()
            floor = float(getattr(self, "min_std", 0.02))
            scale = v.std(0).clamp_min(floor) * self.broad_scale
            self.broad_loc.copy_(v.mean(0))
            self.broad_inv_scale.copy_(scale.reciprocal() * self.modelled)
            log_norm = -(scale.log()[self.modelled].sum() + 0.5 * self.dim * math.log(2 * math.pi))
            self.broad_log_norm.copy_(log_norm)

    def _check(self, x: Tensor, where: str) -> Tensor:
        where = f"{type(self).__name__}.{where}"
        if isinstance(x, Tensor):
            check_like(x, self.constant_values, where)
        check_pose(x, self.layout, where)
        return x.to(self.constant_values.dtype)

    def _check_data(self, x: Tensor | Iterable[Tensor], where: str) -> Tensor:
        if not isinstance(x, Tensor):
            if hasattr(x, "poses_for"):  # a PoseData: take this prior's joints by name
                x = x.poses_for(self.layout)
            else:
                x = torch.cat([torch.as_tensor(b) for b in x])
        x = self._check(x, where)
        if x.dim() != 3 or x.shape[0] < 2:
            raise ShapeError(
                f"{type(self).__name__}.{where}: expected data with shape (N, {len(self.layout)}, 3) "
                f"and N >= 2 poses, got {tuple(x.shape)}"
            )
        return x.detach()

    def _check_initialized(self, where: str) -> None:
        if not bool(self.initialized):
            raise NotInitializedError(
                f"{type(self).__name__}.{where}: the prior has a data-dependent initialization "
                "(ActNorm); call .fit(x) or .initialize(x) first"
            )

    # ------------------------------------------------------------------ checkpoints
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serializable) that rebuild this prior's architecture."""
        config: dict[str, Any] = {}
        for p in list(inspect.signature(type(self).__init__).parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = getattr(self, p.name)
            if isinstance(value, JointLayout):
                if LAYOUTS.get(value.name) != value:
                    value = {"name": value.name, "joints": list(value.joints), "parents": list(value.parents)}
                else:
                    value = value.name
            config[p.name] = value
        return json.loads(json.dumps(config))  # fails loudly on non-JSON values

    def save(self, directory: str | Path, *, model_card: str | None = None) -> Path:
        """Writes the checkpoint folder atomically (``config.json``, ``model.safetensors``, and
        ``README.md`` if ``model_card`` is given) and returns its path; see :mod:`poseprior.hub`."""
        from .hub import save_checkpoint

        return save_checkpoint(self, directory, model_card=model_card)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        map_location: str | torch.device = "cpu",
        max_parameters: int | None = 50_000_000,
    ) -> PosePrior:
        """Loads a prior saved by :meth:`save`, strictly; ``PosePrior.load`` dispatches on the config.

        ``max_parameters`` caps the tensor values an untrusted config may create (None: no cap);
        see :func:`poseprior.hub.load_checkpoint`.
        """
        from .hub import load_checkpoint

        expected = cls if cls.name else None
        return load_checkpoint(
            directory, expected=expected, map_location=map_location, max_parameters=max_parameters
        )


def bits_per_dim(nll: Tensor | float, dim: int) -> Tensor | float:
    r"""Bits per dimension :math:`\mathrm{NLL} / (D \ln 2)` of an NLL in nats."""
    return nll / (dim * math.log(2.0))
