r"""The :class:`PosePrior` contract shared by every prior.

Public methods validate their input once, flatten the batch dimensions and delegate to private
hooks (``_log_prob``, ``_sample``, ``_fit``, ``_initialize``, ``_training_loss``) that receive
checked tensors with shape :math:`(N, J, 3)`.

**The values of a pose.** A prior over a layout of :math:`J` joints sees :math:`3J` axis-angle
values, of three kinds, decided once (by the first :meth:`PosePrior.fit` or
:meth:`PosePrior.initialize`, or given explicitly as ``exclude`` / ``anatomical``) and saved with
the checkpoint:

- **excluded**: values that are not data: joints absent from the source files (the loader's
  ``present`` mask, e.g. the jaw and eyes of SMPL-H files), joints outside the body whose every
  value is exactly constant in the training poses (fingers that were not captured), or values the
  user excludes. They carry no density and samples hold their training mean.
- **anatomical**: real degrees of freedom that the training data moves less than their floor
  (:func:`~poseprior.formats.ranges.value_floors`: a knee's twist, an elbow's off-hinge rotation,
  the collars of a capture that froze them). Each gets an independent Gaussian centred on its
  training mean with standard deviation :math:`\max(\mathrm{std}, \mathrm{spread})`, the spread
  anatomy allows (:func:`~poseprior.formats.ranges.value_spreads`), so a knee twisted 45 degrees
  costs tens of nats and one twisted 2 degrees almost
  nothing, whatever the training data showed.
- **learned**: every other value, modelled by the prior's own model (:meth:`_log_prob`).

``dim`` (:math:`D`) counts the learned and anatomical values: a property of the layout and the
joints present, not of the training set (63 for the body). ``log_prob`` is one normalized
density over those :math:`D` values,

.. math::
    \log p(x) = \log p_{\mathrm{learned}}(x_L)
    + \sum_{i \in A} \log \mathcal{N}(x_i \mid \mu_i, \sigma_i^2),

and bits per dimension are :math:`\mathrm{NLL} / (D \ln 2)`.

**Broad component.** With ``broad_weight`` :math:`w > 0` the learned part is a defensive mixture

.. math::
    p_{\mathrm{learned}}(x_L) = (1 - w)\, p_{\mathrm{model}}(x_L)
    + w\, \mathcal{N}(x_L \mid \mu, \mathrm{diag}(s\sigma)^2)

with :math:`\mu, \sigma` the per-value mean and standard deviation of the training poses
(:math:`\sigma` floored at ``min_std``) and :math:`s` = ``broad_scale``. It is fitted in closed
form (not trained; ``training_loss`` is the model's own), so a pose unlike the training data costs
at most :math:`-\log w` nats more than under independent per-value Gaussians, while poses like the
data lose at most :math:`-\log(1 - w)`. A fraction :math:`w` of the samples are drawn from it.
"""

from __future__ import annotations

import abc
import inspect
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_broad_weight, check_like, check_number, check_pose
from ._execution import Compilable, full_precision
from ._rng import rand
from .amass import PoseData
from .errors import CheckpointError, NotInitializedError, ShapeError
from .formats.adapters import mirror_pose, symmetric
from .formats.layouts import LAYOUTS, JointLayout, get_layout
from .formats.ranges import value_floors, value_spreads
from .nn.independent import IndependentGaussian
from .values import decide_values, flat_indices, upgrade_v1, value_masks

_FIT_COMMON = frozenset({"val", "generator", "progress", "mirror"})  # fit options every prior accepts


class PosePrior(Compilable, nn.Module, abc.ABC):
    r"""A probability density over axis-angle poses of one joint layout.

    Arguments:
        layout: The joints modelled, a layout name such as ``"body"`` (21 joints), ``"left_hand"``
            (15) or ``"smplx"`` (55), or a :class:`~poseprior.formats.JointLayout`.
        min_std: Floor of every standard deviation, in radians (the prior's own variance floor,
            the broad component's and, where larger than the anatomical floor, the anatomical one).
        exclude: Flat indices ``3 * joint + axis`` of the values left out of the density, or
            ``None`` to decide at the first fit (see the module docs).
        anatomical: Flat indices of the values given their anatomical Gaussian instead of a learned
            density, or ``None`` to decide at the first fit (values whose training standard
            deviation is below their floor).
        broad_weight: Weight :math:`w \in [0, 1)` of the broad per-value Gaussian component
            (see the module docs); 0 disables it.
        broad_scale: Factor :math:`s \geq 1` on the broad component's standard deviations.
    """

    name: ClassVar[str] = ""
    """Registry name, set by :func:`~poseprior.register_prior`."""
    version: ClassVar[int] = 2
    """Version of this prior's parameterization; older ones are upgraded (:meth:`upgrade_checkpoint`)."""
    has_rsample: ClassVar[bool] = False
    has_exact_log_prob: ClassVar[bool] = True
    requires_initialization: ClassVar[bool] = False
    """True if ``log_prob`` and ``sample`` need :meth:`initialize` (or ``fit``) first."""
    iterative_fit: ClassVar[bool] = True
    """True if ``fit`` trains by gradient descent (takes ``epochs``, ``val``, ...); False if closed form."""
    default_layout: ClassVar[str] = "body"
    """The layout the command line uses for this prior unless told otherwise."""
    fit_defaults: ClassVar[dict[str, Any]] = {}
    """The prior's ``fit`` options and their defaults (besides ``val``, ``generator``, ``progress``)."""

    def __init__(
        self,
        layout: str | JointLayout = "body",
        *,
        min_std: float = 0.02,
        exclude: Sequence[int] | None = None,
        anatomical: Sequence[int] | None = None,
        broad_weight: float = 0.0,
        broad_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.layout = get_layout(layout)
        self.min_std = check_number("min_std", min_std)
        self._broad_weight = w = check_broad_weight(type(self).__name__, broad_weight)
        self.broad_scale = check_number("broad_scale", broad_scale, at_least=1.0, strict=False)
        n = 3 * len(self.layout)
        self.register_buffer("data_mean", torch.zeros(n))
        self.register_buffer("initialized", torch.tensor(False))
        # Derived from the config (exclude, anatomical); saved too, so that loading weights into a
        # prior built with other values is refused (see _load_from_state_dict).
        self.register_buffer("present", torch.ones(n, dtype=torch.bool))
        self.register_buffer("learned", torch.ones(n, dtype=torch.bool))
        self.anatomy = IndependentGaussian(n)
        self.broad = IndependentGaussian(n) if w > 0 else None
        self._set_values(exclude, anatomical)

    @property
    def broad_weight(self) -> float:
        """Weight of the broad component (0: none); settable within (0, 1) on a prior that has one."""
        return self._broad_weight

    @broad_weight.setter
    def broad_weight(self, value: float) -> None:
        self._broad_weight = check_broad_weight(type(self).__name__, value, self.broad is not None)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # The value kinds are part of the architecture (they come from the config): weights of a
        # prior with other excluded / anatomical / learned values must not load into this one.
        for name in ("present", "learned"):
            incoming = state_dict.get(prefix + name)
            if incoming is not None and not torch.equal(incoming.cpu(), getattr(self, name).cpu()):
                raise RuntimeError(
                    f"{type(self).__name__}.load_state_dict: the weights come from a prior with other "
                    f"{'excluded' if name == 'present' else 'learned/anatomical'} values than this one "
                    f"(exclude={self.exclude}, anatomical={self.anatomical}); build this prior from the "
                    "saved prior's config (type(prior)(**prior.get_config())) or load it with "
                    "poseprior.load()"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ description
    @property
    def event_shape(self) -> torch.Size:
        """The shape of one pose, :math:`(J, 3)`."""
        return torch.Size((len(self.layout), 3))

    @property
    def dim(self) -> int:
        r"""The number of dimensions :math:`D` of the density: the learned and anatomical values."""
        return self._dim

    dof = dim

    @property
    def model_dim(self) -> int:
        """The number of learned values: the dimension of the prior's own model."""
        return self._model_dim

    @property
    def space(self) -> str:
        """What ``log_prob`` is a density on: Lebesgue measure on the axis-angle values in the density."""
        return f"axis_angle:{self.layout.name}:lebesgue"

    @property
    def present_mask(self) -> Tensor:
        """Boolean mask with shape :math:`(J, 3)`: True where the value enters the density."""
        return self.present.reshape(len(self.layout), 3)

    modelled_mask = present_mask

    @property
    def learned_mask(self) -> Tensor:
        """Boolean mask with shape :math:`(J, 3)`: True where the prior's own model gives the density."""
        return self.learned.reshape(len(self.layout), 3)

    @property
    def anatomical_mask(self) -> Tensor:
        """Boolean mask with shape :math:`(J, 3)`: True where the density is the anatomical Gaussian."""
        return (self.present & ~self.learned).reshape(len(self.layout), 3)

    def _names(self, mask: Tensor) -> list[str]:
        return [f"{self.layout.joints[i // 3]}.{'xyz'[i % 3]}" for i in mask.nonzero().flatten().tolist()]

    def excluded_names(self) -> list[str]:
        """The excluded values as ``"joint.axis"`` strings, e.g. ``"left_eye.x"``."""
        return self._names(~self.present)

    def learned_names(self) -> list[str]:
        """The values the prior's own model learns, as ``"joint.axis"`` strings."""
        return self._names(self.learned)

    def anatomical_names(self) -> list[str]:
        """The values with an anatomical density, as ``"joint.axis"`` strings, e.g. ``"left_knee.y"``."""
        return self._names(self.present & ~self.learned)

    def spreads(self) -> Tensor:
        r"""The anatomical spread of every value in radians, with shape :math:`(J, 3)`: the standard
        deviation an anatomical value gets when its training data moved it less (at least :meth:`floors`)."""
        return torch.maximum(value_spreads(self.layout).to(self.data_mean), self.floors())

    def floors(self) -> Tensor:
        r"""The floor of every value in radians, with shape :math:`(J, 3)`: the anatomical table, at least
        ``min_std``."""
        return value_floors(self.layout).clamp_min(self.min_std).to(self.data_mean)

    def extra_repr(self) -> str:
        broad = (
            f", broad_weight={self.broad_weight:g}, broad_scale={self.broad_scale:g}" if self.broad else ""
        )
        anat = f" ({self._dim - self._model_dim} anatomical)" if self._dim > self._model_dim else ""
        return f"layout={self.layout.name!r}, D={self.dim}{anat}{broad}"

    # ------------------------------------------------------------------ public API
    def log_prob(self, x: Tensor) -> Tensor:
        r"""Log-density of poses.

        Arguments:
            x: Axis-angle poses with shape :math:`(*, J, 3)`.

        Returns:
            The log-density over the :math:`D` values of the density, with shape :math:`(*)`.
            Differentiable with respect to ``x``. An empty batch gives an empty result.
        """
        x = self._check(x, "log_prob")
        self._check_initialized("log_prob")
        batch = x.shape[:-2]
        if batch.numel() == 0:
            return x.new_zeros(batch)
        if x.dim() != 3:  # (no view node in the autograd graph for the usual (N, J, 3))
            x = x.reshape(-1, *self.event_shape)
        with full_precision(x.device):
            lp = self._run_full_log_prob(x)
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
            generator: The random generator; the global RNG is never used when one is given. Draws
                are made on the generator's device and moved to the prior's.
        """
        self._check_initialized("sample")
        shape = self._sample_shape(sample_shape)
        n = shape.numel()
        if n == 0:
            return self.data_mean.new_zeros(*shape, *self.event_shape)
        with full_precision(self.data_mean.device):
            return self._draw(n, generator).reshape(*shape, *self.event_shape)

    def sample_and_log_prob(
        self, sample_shape: int | Sequence[int] = (), *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""Draws poses with shape :math:`(*S, J, 3)` and returns them with their log-density :math:`(*S)`.

        Without gradients; the same poses as :meth:`sample` with the same generator. Flows
        compute the density on the way (no second pass) when there is no broad component.
        """
        self._check_initialized("sample_and_log_prob")
        shape = self._sample_shape(sample_shape)
        n = shape.numel()
        with torch.no_grad(), full_precision(self.data_mean.device):
            pair = self._sample_and_log_prob(n, generator) if self.broad is None and n > 0 else None
            if pair is None:
                x = self.sample(shape, generator=generator)
                return x, self.log_prob(x)
            x, lp = pair
            x = self._complete(x, generator)
            if self._dim > self._model_dim:
                lp = lp + self.anatomy.log_prob(x.reshape(n, -1))
            return x.reshape(*shape, *self.event_shape), lp.reshape(shape)

    def rsample(
        self, sample_shape: int | Sequence[int] = (), *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Like :meth:`sample`, differentiable with respect to the parameters (if ``has_rsample``)."""
        raise NotImplementedError(f"{type(self).__name__} has no reparameterized sampler (has_rsample=False)")

    def without_broad(self) -> PosePrior:
        """A copy of this prior without its broad component (``broad_weight=0``): the learned model
        alone, to measure what it does by itself (the anatomical values keep their Gaussians)."""
        plain = type(self)(**{**self.get_config(), "broad_weight": 0.0}).to(self.data_mean)
        plain.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("broad.")})
        return plain.train(self.training)

    def initialize(self, x: Tensor | PoseData | Iterable[Tensor]) -> None:
        r"""Data-dependent initialization from poses with shape :math:`(N, J, 3)` (or a ``PoseData``).

        Decides the excluded and anatomical values where they are not given, fits their
        statistics and the broad component, then the prior's own data-dependent state. Never
        triggered by forward.
        """
        x, present = self._data(x, "initialize")
        self._initialize_from(x, present)

    def fit(self, x: Tensor | PoseData | Iterable[Tensor], **options: Any) -> PosePrior:
        r"""Fits the prior to poses with shape :math:`(N, J, 3)` and returns ``self``.

        ``x`` may also be a :class:`~poseprior.amass.PoseData` (its joints are taken by name and
        its absent joints excluded), a NumPy array, or an iterable of tensors (e.g. a DataLoader),
        which is concatenated. The first call (or any call of a closed-form prior) initializes the
        prior (see :meth:`initialize`); later calls of an iterative prior fine-tune it. Keyword
        arguments are the prior's training options (``fit_defaults``, plus ``val=`` poses for early
        stopping, ``generator``, ``progress`` and ``mirror``).

        ``mirror``: also train on the mirror image of every pose
        (:func:`~poseprior.formats.adapters.mirror_pose`, left and right swapped), which doubles
        the data and makes the prior left/right symmetric. ``None`` (the default) mirrors when the
        layout has a ``right_`` twin for every ``left_`` joint (the body, both hands, ...) and
        not otherwise (one hand); ``True`` requires it; ``False`` never mirrors.
        """
        x, present = self._data(x, "fit")
        allowed = _FIT_COMMON | self.fit_defaults.keys()
        unknown = sorted(options.keys() - allowed)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.fit: unknown option(s) {unknown}; it takes {sorted(allowed)}"
            )
        options = {**self.fit_defaults, **options}
        mirror = options.pop("mirror", None)
        if mirror is None:
            mirror = symmetric(self.layout)
        elif not isinstance(mirror, bool):
            raise ValueError(f"{type(self).__name__}.fit: mirror must be True, False or None, got {mirror!r}")
        if mirror:
            x = torch.cat([x, mirror_pose(x, self.layout)])
        if options.get("val") is not None:
            options["val"] = self._data(options["val"], "fit(val=...)")[0]
        if not bool(self.initialized) or not self.iterative_fit:
            self._initialize_from(x, present)
        self._fit(x, **options)
        return self

    def training_loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The scalar objective minimized by ``fit`` and by the Lightning trainer.

        ``generator`` drives the training noise of priors that use it (the global RNG when ``None``).
        Under autocast (mixed precision) the loss is still computed in the prior's dtype.
        """
        x = self._check(x, "training_loss")
        self._check_initialized("training_loss")
        with full_precision(x.device):
            return self._run_training_loss(x.reshape(-1, *self.event_shape), generator)

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _log_prob(self, x: Tensor) -> Tensor:
        """x: (N, J, 3) validated -> (N,): the density of the learned values."""

    @abc.abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        """-> (n, J, 3) with the learned values drawn from the model (the others are set by the base)."""

    def _sample_and_log_prob(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor] | None:
        """-> (n, J, 3) poses as :meth:`_sample` and their (n,) model log-density, or None if not offered."""
        return None

    def _initialize(self, x: Tensor) -> None:  # noqa: B027  (optional hook)
        """The prior's own data-dependent initialization; x: (N, J, 3)."""

    def _training_loss(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return -self._log_prob(x).mean()

    def _fit(self, x: Tensor, **options: Any) -> None:
        from ._fitloop import fit_adam

        fit_adam(self, x, **options)

    def _rebuild(self) -> None:  # noqa: B027  (optional hook)
        """Rebuilds the modules whose shapes depend on :attr:`model_dim`, after the first fit decided it."""

    def _full_log_prob(self, x: Tensor) -> Tensor:
        """(N, J, 3) -> (N,): the whole density. A prior may override it to fuse the parts (global_flow)."""
        return self._mix(self._log_prob(x), x)

    # ------------------------------------------------------------------ helpers for hooks
    def _select(self, x: Tensor) -> Tensor:
        """(N, J, 3) -> (N, model_dim): the learned values."""
        return x.reshape(x.shape[0], -1)[:, self.learned]

    def _fill(self, z: Tensor) -> Tensor:
        """(N, model_dim) -> (N, J, 3): the learned values from ``z``, the others at their training means."""
        out = self.data_mean.to(z.dtype).expand(z.shape[0], -1).clone()
        out[:, self.learned] = z
        return out.reshape(z.shape[0], *self.event_shape)

    def _mix(self, model_log_prob: Tensor, x: Tensor) -> Tensor:
        """(N,) model log-density and (N, J, 3) poses -> (N,) log-density of the whole prior."""
        lp = model_log_prob
        flat = x.reshape(x.shape[0], -1)
        if self.broad is not None:
            # logsumexp, not logaddexp: logaddexp's second derivative is NaN once one side is
            # e^700 times the other (a pose far from the model's data), logsumexp's is not.
            terms = [
                lp + math.log1p(-self.broad_weight),
                self.broad.log_prob(flat) + math.log(self.broad_weight),
            ]
            lp = torch.logsumexp(torch.stack(terms), 0)
        if self._dim > self._model_dim:
            lp = lp + self.anatomy.log_prob(flat)
        return lp

    def _draw(self, n: int, generator: torch.Generator | None) -> Tensor:
        """(n, J, 3) samples of the whole prior: component choice, model or broad draws, then the rest."""
        if self.broad is None:
            return self._complete(self._sample(n, generator), generator)
        pick = rand((n,), generator, self.data_mean) < self.broad_weight
        k = int(pick.sum())
        x = self.data_mean.new_empty(n, *self.event_shape)
        if k < n:
            x[~pick] = self._sample(n - k, generator).to(x.dtype)
        if k > 0:
            x[pick] = self._fill(self.broad.sample(k, generator))
        return self._complete(x, generator)

    def _complete(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Sets the excluded values of samples (n, J, 3) to their means and draws the anatomical ones."""
        n = x.shape[0]
        flat = torch.where(self.present, x.reshape(n, -1), self.data_mean.to(x.dtype))
        if self._dim > self._model_dim:
            flat[:, self.present & ~self.learned] = self.anatomy.sample(n, generator).to(flat.dtype)
        return flat.reshape(n, *self.event_shape)

    def _set_values(self, exclude: Sequence[int] | None, anatomical: Sequence[int] | None) -> None:
        """Sets which values are excluded, anatomical and learned (and resets their parts to defaults)."""
        n = 3 * len(self.layout)
        exclude, anatomical = flat_indices("exclude", exclude, n), flat_indices("anatomical", anatomical, n)
        present, learned = value_masks(n, exclude, anatomical)
        self.exclude, self.anatomical = exclude, anatomical
        self.present.copy_(present)
        self.learned.copy_(learned)
        self._dim, self._model_dim = int(present.sum()), int(learned.sum())
        # Before any data: the anatomical values N(0, spread^2), the broad component N(0, I).
        self.anatomy.set(self.data_mean, self.spreads().reshape(-1), present & ~learned)
        if self.broad is not None:
            self.broad.set(self.data_mean, torch.ones_like(self.data_mean), learned)

    @torch.no_grad()
    def _initialize_from(self, x: Tensor, present_joints: Tensor | None) -> None:
        """Decides the values, fits their statistics and the broad component, then :meth:`_initialize`."""
        exclude, anatomical = decide_values(
            x,
            self.layout,
            self.floors(),
            present_joints=present_joints,
            exclude=self.exclude,
            anatomical=self.anatomical,
            where=f"{type(self).__name__}.fit",
        )
        old = self._model_dim
        self._set_values(exclude, anatomical)
        if self._model_dim != old:
            self._rebuild()
        flat = x.reshape(x.shape[0], -1).double()
        mean, std = flat.mean(0), flat.std(0)
        self.data_mean.copy_(mean)
        anat = self.present & ~self.learned
        self.anatomy.set(mean, torch.maximum(std, self.spreads().reshape(-1).double()), anat)
        if self.broad is not None:
            self.broad.set(mean, std.clamp_min(self.min_std) * self.broad_scale, self.learned)
        self._initialize(x)
        self.initialized.fill_(True)

    def _sample_shape(self, sample_shape: int | Sequence[int]) -> torch.Size:
        shape = (sample_shape,) if isinstance(sample_shape, int) else sample_shape
        shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else (shape,)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise ValueError(
                f"{type(self).__name__}.sample: sample_shape must be an int >= 0 or a sequence of them, "
                f"got {sample_shape!r}"
            )
        return torch.Size(shape)

    def _check(self, x: Tensor, where: str) -> Tensor:
        where = f"{type(self).__name__}.{where}"
        if isinstance(x, Tensor):
            check_like(x, self.data_mean, where)
        check_pose(x, self.layout, where)
        dtype = self.data_mean.dtype
        return x if x.dtype == dtype else x.to(dtype)

    def _data(
        self, x: Tensor | PoseData | np.ndarray | Iterable[Tensor], where: str
    ) -> tuple[Tensor, Tensor | None]:
        """Training poses (N, J, 3) from any accepted input, and the present joints (J,) if known."""
        present = None
        if isinstance(x, PoseData):
            present = x.present_for(self.layout)
            x = x.poses_for(self.layout, missing="zero")
        elif isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        elif not isinstance(x, Tensor):
            x = torch.cat([torch.as_tensor(b) for b in x])
        x = self._check(x.to(self.data_mean.device) if x.device.type == "cpu" else x, where)
        if x.dim() != 3 or x.shape[0] < 2:
            raise ShapeError(
                f"{type(self).__name__}.{where}: expected data with shape (N, {len(self.layout)}, 3) "
                f"and N >= 2 poses, got {tuple(x.shape)}"
            )
        return x.detach(), present

    def _check_initialized(self, where: str) -> None:
        if self.requires_initialization and not bool(self.initialized):
            raise NotInitializedError(
                f"{type(self).__name__}.{where}: the prior has a data-dependent initialization "
                "(ActNorm); call .fit(x) or .initialize(x) first"
            )

    @classmethod
    def upgrade_checkpoint(
        cls, version: int, config: dict[str, Any], state: dict[str, Tensor]
    ) -> tuple[dict, dict]:
        """Maps a checkpoint of an earlier ``version`` of this prior onto the current one (same density).

        Version 1 (poseprior 0.1.0) excluded every value constant in the training data and had no
        anatomical values: its ``constant_dims`` become ``exclude``, with ``anatomical=[]``.
        Priors extend this for their own changes.
        """
        if version != 1:
            raise CheckpointError(f"no upgrade from version {version} of prior {cls.name!r}")
        return upgrade_v1(config, state)

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
