r"""Priors as regularizers: SMPLify-style fitting of body poses to observed 3D joints.

The main use of a pose prior is as one term in someone else's optimization. Every registered prior
has :meth:`~poseprior.PosePrior.penalty`, the negative log-density of a pose; with
``per_dim=True`` it is divided by the number of modelled values :math:`D`, so that one weight
transfers between priors over different numbers of dimensions:

.. code-block:: python

    loss = data_term(pose) + weight * prior.penalty(pose, per_dim=True).mean()

:func:`fit_to_joints` is a small, complete example of that use. For every frame :math:`n` it
minimizes, over the 21 body rotations :math:`\theta_n` (axis-angle) and, optionally, the root
orientation :math:`R_n` and translation :math:`t_n`,

.. math::

    E_n = \frac{1}{|V_n|} \sum_{j \in V_n} \lVert \mathrm{FK}(\theta_n, R_n, t_n)_j - y_{nj} \rVert^2
          \;+\; w \, \frac{-\log p(\theta_n)}{D}

where :math:`y_{nj}` are the observed joint positions in metres, :math:`V_n` the visible joints
(occluded joints simply leave the sum) and :math:`w` the prior weight. Frames are independent; the
loss minimized is the mean of :math:`E_n` over frames.

**Default weight.** :data:`DEFAULT_WEIGHT` (3e-3) was chosen with
``benchmarks/completion.py --sweep``: priors fitted with their defaults on both bundled CMU train
splits minus every 8th file, 192 frames of those held-out files, a hidden left leg, right arm or
both legs, 10 mm noise on the visible joints, 200 L-BFGS iterations; the validation files were
not used. Mean over the three cases of the hidden-joint MPJPE (mm) / joint-rotation error
(degrees), without a prior 239.6 / 20.12:

=============  ===============  ===============  ===============  ===============  ===============
weight         gaussian (diag)  gaussian (full)  global_flow      gmm              joint_flow
=============  ===============  ===============  ===============  ===============  ===============
1e-4           234.6 / 18.76    230.5 / 18.57    229.5 / 18.56    224.0 / 18.23    237.8 / 18.26
1e-3           187.7 / 13.81    172.7 / 13.50    176.0 / 13.67    168.1 / 12.98    232.4 / 15.12
3e-3           156.9 / 12.25    154.2 / 11.89    149.5 / 13.04    149.4 / 12.11    230.8 / 14.99
1e-2           157.6 / 12.75    149.2 / 12.16    150.1 / 14.77    146.7 / 12.79    231.8 / 15.54
=============  ===============  ===============  ===============  ===============  ===============

3e-3 gives the lowest rotation error for every prior and hidden-joint errors within 3.4 % of
the lowest. With today's priors the earlier 1e-3 (chosen on the first CMU sample alone) has
12-20 % higher hidden-joint errors for every prior but joint_flow, and higher rotation errors for
all. A larger weight trusts the prior more (heavier
noise or occlusion); a smaller one trusts the observations. The weight is per modelled value
(``per_dim=True``) and relative to a data term in m², so it transfers between priors but must be
rescaled if you measure the data term in other units.

**Forward kinematics.** Two body models are provided: :class:`SkeletonFK`, the built-in skeleton
of :mod:`poseprior.kinematics` (no model files needed), and :class:`SMPLXFK`, which runs ``smplx``
on the user's own SMPL-X model files. Any callable with the :class:`BodyModel` signature works.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .base import PosePrior
from .errors import ShapeError, ValueCheckError
from .formats.layouts import BODY_JOINT_NAMES
from .formats.rotations import matrix_to_axis_angle
from .joint_metrics import mpjpe, pa_mpjpe, pck, procrustes_align
from .kinematics import SKELETON_JOINTS, forward_kinematics

__all__ = [
    "DEFAULT_WEIGHT",
    "BodyModel",
    "FitResult",
    "SMPLXFK",
    "SkeletonFK",
    "fit_to_joints",
    "mpjpe",
    "pa_mpjpe",
    "pck",
    "procrustes_align",
]

DEFAULT_WEIGHT = 3e-3
r"""Default prior weight :math:`w` (data term in m², prior in nats per modelled value); see above."""

NUM_JOINTS = 22
"""The joints the fitter compares: the pelvis and the 21 body joints, in SMPL order."""

# Joints that a body-pose change moves little: used to estimate the root orientation (Kabsch).
_TORSO = (
    "pelvis", "left_hip", "right_hip", "spine1", "spine2", "spine3", "neck", "left_collar", "right_collar",
)  # fmt: skip


@runtime_checkable
class BodyModel(Protocol):
    r"""Forward kinematics: poses to the positions of the 22 body joints (pelvis + 21, SMPL order).

    ``__call__(body_pose (N, 21, 3), root_orient (N, 3), trans (N, 3)) -> (N, 22, 3)`` in metres,
    differentiable with respect to all three arguments.
    """

    def __call__(self, body_pose: Tensor, root_orient: Tensor, trans: Tensor) -> Tensor: ...


class SkeletonFK:
    r"""The built-in skeleton of :mod:`poseprior.kinematics` (no model files needed).

    The pelvis is at ``trans`` and the root rotation turns the body about it.

    Arguments:
        rest: Rest (T-pose) positions of the 22 joints in metres, with shape :math:`(22, 3)`;
            ``None`` uses :func:`poseprior.kinematics.rest_joints`.
    """

    def __init__(self, rest: Tensor | None = None) -> None:
        if rest is not None and tuple(rest.shape) != (NUM_JOINTS, 3):
            raise ShapeError(
                f"SkeletonFK: rest must have shape (22, 3) (pelvis + 21 body joints), got {tuple(rest.shape)}"
            )
        self.rest = rest

    def __call__(self, body_pose: Tensor, root_orient: Tensor, trans: Tensor) -> Tensor:
        r"""Joint positions with shape :math:`(N, 22, 3)` of poses :math:`(N, 21, 3)`."""
        return forward_kinematics(body_pose, root_orient, trans, rest=self.rest)

    def __repr__(self) -> str:
        return f"SkeletonFK(rest={'built-in' if self.rest is None else 'custom'})"


class SMPLXFK:
    r"""Forward kinematics through ``smplx`` with the user's SMPL-X model file (``.npz``).

    Returns the first 22 joints of the SMPL-X model (pelvis + 21 body joints), with the jaw, eyes,
    hands (flat) and expression at zero. ``trans`` is smplx's ``transl``: the pelvis sits at
    ``transl + J_0(betas)``, as in SMPL-X.

    Arguments:
        model_path: An ``SMPLX_<GENDER>.npz`` file, or a folder holding one (directly or in a
            ``smplx/`` subfolder). The old ``.pkl`` files need chumpy and are not supported.
        gender: ``"neutral"``, ``"male"`` or ``"female"``; picks the file when ``model_path`` is a
            folder.
        betas: Shape coefficients with shape :math:`(B,)`, or ``None`` for the mean shape.

    smplx prints a ``WARNING`` line to stdout for model files with fewer than 400 shape
    components; it is turned into a Python warning here.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        gender: Literal["neutral", "male", "female"] = "neutral",
        betas: Tensor | None = None,
    ) -> None:
        try:
            import smplx
        except ImportError as e:  # pragma: no cover - smplx is a declared dependency
            raise ImportError("SMPLXFK needs smplx: pip install smplx") from e
        path = _smplx_file(Path(model_path), gender)
        num_betas = 10 if betas is None else int(betas.shape[-1])
        if betas is not None and betas.dim() != 1:
            raise ShapeError(f"SMPLXFK: betas must have shape (B,), got {tuple(betas.shape)}")
        buf = io.StringIO()
        # smplx reports with print(); keep the library quiet on stdout and pass the text on as a warning.
        with contextlib.redirect_stdout(buf):
            model = smplx.SMPLX(
                str(path), ext="npz", gender=gender, num_betas=num_betas, use_pca=False, flat_hand_mean=True
            )
        for line in buf.getvalue().splitlines():
            if line.strip():
                warnings.warn(f"smplx: {line.strip()}", UserWarning, stacklevel=2)
        model.requires_grad_(False)
        self.model: nn.Module = model.eval()
        self.path = path
        self.betas = torch.zeros(num_betas) if betas is None else betas.detach().clone()

    def __call__(self, body_pose: Tensor, root_orient: Tensor, trans: Tensor) -> Tensor:
        r"""Joint positions with shape :math:`(N, 22, 3)` of poses :math:`(N, 21, 3)`."""
        if body_pose.dim() != 3 or body_pose.shape[1:] != (21, 3):
            raise ShapeError(
                f"SMPLXFK: expected body_pose with shape (N, 21, 3), got {tuple(body_pose.shape)}"
            )
        n, like = body_pose.shape[0], body_pose
        ref = self.model.v_template  # a floating-point buffer: the model's dtype and device
        if ref.dtype != like.dtype or ref.device != like.device:
            self.model.to(dtype=like.dtype, device=like.device)
        zeros = like.new_zeros
        # smplx's model was built at batch 1: every pose tensor is passed at batch n (see smplx notes).
        out = self.model(
            betas=self.betas.to(like).expand(n, -1),
            global_orient=root_orient.reshape(n, 3),
            body_pose=body_pose.reshape(n, 63),
            transl=trans.reshape(n, 3),
            jaw_pose=zeros(n, 3),
            leye_pose=zeros(n, 3),
            reye_pose=zeros(n, 3),
            left_hand_pose=zeros(n, 45),
            right_hand_pose=zeros(n, 45),
            expression=zeros(n, self.model.num_expression_coeffs),
            return_verts=False,
            return_shaped=False,
        )
        return out.joints[:, :NUM_JOINTS]

    def __repr__(self) -> str:
        return f"SMPLXFK({str(self.path)!r})"


def _smplx_file(path: Path, gender: str) -> Path:
    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"SMPLXFK: gender must be 'neutral', 'male' or 'female', got {gender!r}")
    if path.is_dir():
        name = f"SMPLX_{gender.upper()}.npz"
        for candidate in (path / name, path / "smplx" / name):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"SMPLXFK: no {name} in {path} or {path / 'smplx'}; download the SMPL-X model files "
            "(npz) from https://smpl-x.is.tue.mpg.de and pass the file or its folder"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"SMPLXFK: model file {path} not found; pass an SMPLX_<GENDER>.npz file or its folder"
        )
    if path.suffix != ".npz":
        raise ValueError(
            f"SMPLXFK: {path.name} is not an .npz model file; the .pkl files need chumpy (which does not "
            "work on current Python): use the .npz release of SMPL-X"
        )
    return path


@dataclass
class FitResult:
    r"""The result of :func:`fit_to_joints`.

    Attributes:
        body_pose: Fitted body rotations (axis-angle, layout ``"body"``), with shape :math:`(N, 21, 3)`.
        root_orient: Fitted (or given) root orientations, with shape :math:`(N, 3)`.
        trans: Fitted (or given) translations, with shape :math:`(N, 3)`.
        joints: The fitted joint positions, with shape :math:`(N, 22, 3)`.
        history: One entry per objective evaluation (per step with Adam): ``loss``, ``data`` (mean
            squared distance over the visible joints, m²) and ``prior`` (mean penalty per modelled
            value, nats; 0 without a prior).
    """

    body_pose: Tensor
    root_orient: Tensor
    trans: Tensor
    joints: Tensor
    history: list[dict[str, float]] = field(default_factory=list)


def fit_to_joints(
    observed: Tensor,
    prior: PosePrior | None = None,
    *,
    visible: Tensor | None = None,
    weight: float = DEFAULT_WEIGHT,
    steps: int = 200,
    lr: float | None = None,
    fk: BodyModel | None = None,
    init: Tensor | FitResult | None = None,
    fit_root: bool = True,
    root_orient: Tensor | None = None,
    trans: Tensor | None = None,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
) -> FitResult:
    r"""Fits body poses so that forward kinematics matches observed 3D joints, regularized by a prior.

    Minimizes the mean over frames of the mean squared distance between the model's joints and
    the visible observed joints, plus ``weight * prior.penalty(body_pose, per_dim=True)`` (see the
    module docs), over axis-angle rotations, with L-BFGS (strong Wolfe line search; the default) or
    Adam (cosine-decaying learning rate). Frames are independent, but share one optimizer run.
    The prior's parameters are never updated and receive no gradients (only the fitted variables
    are inputs of the gradient computation); the prior is evaluated in eval mode and put back in
    its previous mode afterwards. The inputs are not modified.

    Arguments:
        observed: Observed joint positions in metres, with shape :math:`(N, 22, 3)` (pelvis and the
            21 body joints in SMPL order, see :data:`poseprior.kinematics.SKELETON_JOINTS`). Hidden
            joints may hold NaN.
        prior: Any prior over the ``"body"`` layout (21 joints), or ``None`` for no prior.
        visible: Which joints are observed, a bool mask with shape :math:`(22,)` or :math:`(N, 22)`;
            ``None`` means all. Every frame needs at least one visible joint.
        weight: The prior weight :math:`w` (ignored without a prior).
        steps: L-BFGS iterations (at most 1.25 objective evaluations each) or Adam steps.
        lr: L-BFGS step scale (default 1) or initial Adam learning rate (default 0.1 rad or m per step).
        fk: The body model, e.g. :class:`SkeletonFK` (the default) or :class:`SMPLXFK`.
        init: Initial body poses with shape :math:`(N, 21, 3)` or :math:`(21, 3)`, or a previous
            :class:`FitResult` (its pose, root and translation); zeros (rest pose) if ``None``.
        optimizer: ``"lbfgs"`` (default; converges in fewer evaluations and does not drift along
            directions the joints do not determine) or ``"adam"``.
        fit_root: Also optimize the root orientation and translation. If False they stay fixed at
            ``root_orient`` and ``trans`` (identity and zero if not given).
        root_orient: Initial (or, without ``fit_root``, fixed) root orientations, with shape
            :math:`(N, 3)` or :math:`(3,)`. If ``None`` while fitting the root, they are
            estimated from the visible torso joints (Kabsch alignment of the rest pose).
        trans: Initial (or fixed) translations with shape :math:`(N, 3)` or :math:`(3,)`; if
            ``None`` while fitting the root, estimated from the visible torso joints.

    Returns:
        A :class:`FitResult` with detached tensors in the dtype of ``observed``.

    Example:
        >>> from poseprior.kinematics import forward_kinematics
        >>> pose = torch.zeros(2, 21, 3)
        >>> pose[:, 3, 0] = 0.8  # left knee bent
        >>> y = forward_kinematics(pose)
        >>> res = fit_to_joints(y, None, steps=200)
        >>> mpjpe(res.joints, y) < 0.01
        True
    """
    fk = SkeletonFK() if fk is None else fk
    obs, mask = _check_observed(observed, visible)
    if prior is not None:
        _check_prior(prior)
    lr = _check_options(optimizer, steps, weight, lr)
    if isinstance(init, FitResult):
        root_orient = init.root_orient if root_orient is None else root_orient
        trans = init.trans if trans is None else trans
        init = init.body_pose
    start = _starting_values(fk, obs, mask, init, root_orient, trans, fit_root)
    # Fresh leaves: the caller's tensors are never modified.
    grads = (True, fit_root, fit_root)
    body, root, tr = (v.detach().clone().requires_grad_(g) for v, g in zip(start, grads, strict=True))
    params = [body, root, tr] if fit_root else [body]
    history = _optimize(
        params, _objective(fk, obs, mask, prior, weight, body, root, tr), optimizer, lr, steps, prior
    )
    with torch.no_grad():
        joints = fk(body, root, tr)
    return FitResult(body.detach(), root.detach(), tr.detach(), joints.detach(), history)


def _check_options(optimizer: str, steps: int, weight: float, lr: float | None) -> float:
    """Validates the optimizer options of :func:`fit_to_joints`; returns the learning rate."""
    if optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"fit_to_joints: optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"fit_to_joints: steps must be a non-negative int, got {steps!r}")
    lr = (1.0 if optimizer == "lbfgs" else 0.1) if lr is None else lr
    if not (math.isfinite(weight) and weight >= 0) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(
            f"fit_to_joints: weight must be >= 0 and lr > 0 (finite), got weight={weight}, lr={lr}"
        )
    return lr


def _starting_values(
    fk: BodyModel,
    obs: Tensor,
    mask: Tensor,
    init: Tensor | None,
    root_orient: Tensor | None,
    trans: Tensor | None,
    fit_root: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The initial body poses (N, 21, 3), root orientations (N, 3) and translations (N, 3)."""
    n = obs.shape[0]
    pose0 = _broadcast(init, (n, 21, 3), "init", obs) if init is not None else obs.new_zeros(n, 21, 3)
    root0 = _broadcast(root_orient, (n, 3), "root_orient", obs) if root_orient is not None else None
    trans0 = _broadcast(trans, (n, 3), "trans", obs) if trans is not None else None
    if fit_root and (root0 is None or trans0 is None):
        est_root, est_trans = _estimate_root(fk, obs, mask, pose0, root0)
        root0 = est_root if root0 is None else root0
        trans0 = est_trans if trans0 is None else trans0
    root0 = obs.new_zeros(n, 3) if root0 is None else root0
    trans0 = obs.new_zeros(n, 3) if trans0 is None else trans0
    return pose0.contiguous(), root0.contiguous(), trans0.contiguous()  # L-BFGS views its variables


def _objective(
    fk: BodyModel,
    obs: Tensor,
    mask: Tensor,
    prior: PosePrior | None,
    weight: float,
    body: Tensor,
    root: Tensor,
    tr: Tensor,
) -> Callable[[], tuple[Tensor, Tensor, Tensor]]:
    """The loss of :func:`fit_to_joints` as a function of the fitted leaves: (loss, data, prior)."""
    wmask = mask.to(obs.dtype)
    count = wmask.sum(-1)

    def objective() -> tuple[Tensor, Tensor, Tensor]:
        joints = fk(body, root, tr)
        data = (((joints - obs).pow(2).sum(-1) * wmask).sum(-1) / count).mean()
        if prior is None:
            return data, data, data.new_zeros(())
        pen = prior.penalty(body, per_dim=True).mean().to(obs.dtype)
        return data + weight * pen, data, pen

    return objective


def _optimize(
    params: list[Tensor],
    objective: Callable[[], tuple[Tensor, Tensor, Tensor]],
    optimizer: str,
    lr: float,
    steps: int,
    prior: PosePrior | None,
    where: str = "fit_to_joints",
) -> list[dict[str, float]]:
    """Runs L-BFGS (all iterations in one call) or Adam with a cosine schedule on ``objective``, a
    function returning (loss, data term, prior term), with ``prior`` in eval mode; returns the
    history. Shared by :func:`fit_to_joints` and ``fit_to_joints_latent`` (``where`` names it)."""
    sched = None
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr * 0.01)
    else:
        # All iterations in one call: L-BFGS's line-search state does not survive well across calls.
        opt = torch.optim.LBFGS(
            params, lr=lr, max_iter=max(steps, 1), history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=1e-12, tolerance_change=1e-15,
        )  # fmt: skip
    history: list[dict[str, float]] = []

    def closure() -> Tensor:
        loss, data, pen = objective()
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"{where}: the loss became {float(loss)} at evaluation {len(history)} (data {float(data)}, "
                f"prior {float(pen)}); lower lr, give a better init, or check the prior on these poses"
            )
        # Gradients only for the fitted variables: nothing accumulates in the prior's .grad.
        for p, g in zip(params, torch.autograd.grad(loss, params), strict=False):
            p.grad = g.contiguous()  # L-BFGS flattens the gradients with view()
        history.append(
            {"loss": float(loss.detach()), "data": float(data.detach()), "prior": float(pen.detach())}
        )
        return loss.detach()

    with _eval_mode(prior):
        if sched is None:
            if steps > 0:
                opt.step(closure)
        else:
            for _ in range(steps):
                opt.step(closure)
                sched.step()
    return history


# ---------------------------------------------------------------------------------- helpers
def _check_observed(observed: object, visible: Tensor | None) -> tuple[Tensor, Tensor]:
    """Validates the inputs; returns observed with hidden joints zeroed, and an (N, 22) mask."""
    where = "fit_to_joints"
    if not isinstance(observed, Tensor):
        raise TypeError(
            f"{where}: observed must be a torch.Tensor of shape (N, 22, 3), got {type(observed).__name__}"
        )
    if observed.dim() != 3 or observed.shape[1:] != (NUM_JOINTS, 3):
        hint = " (add a batch dimension: observed[None])" if tuple(observed.shape) == (NUM_JOINTS, 3) else ""
        if observed.dim() == 3 and observed.shape[-1] == 3 and observed.shape[1] != NUM_JOINTS:
            hint = (
                f" ({observed.shape[1]} joints given; pass the pelvis and the 21 body joints in SMPL order, "
                f"{', '.join(SKELETON_JOINTS[:3])}, ...)"
            )
        raise ShapeError(
            f"{where}: expected observed joints with shape (N, 22, 3), got {tuple(observed.shape)}{hint}"
        )
    if not observed.is_floating_point():
        raise ValueCheckError(
            f"{where}: observed must be floating point, got dtype {observed.dtype}; use .float()"
        )
    n = observed.shape[0]
    if n == 0:
        raise ShapeError(f"{where}: observed has 0 frames")
    if visible is None:
        mask = torch.ones(n, NUM_JOINTS, dtype=torch.bool, device=observed.device)
    else:
        if not isinstance(visible, Tensor) or visible.dtype != torch.bool:
            got = visible.dtype if isinstance(visible, Tensor) else type(visible).__name__
            raise ValueCheckError(
                f"{where}: visible must be a bool tensor of shape (22,) or (N, 22), got {got}"
            )
        if tuple(visible.shape) not in ((NUM_JOINTS,), (n, NUM_JOINTS)):
            raise ShapeError(
                f"{where}: visible must have shape (22,) or (N, 22) = ({n}, 22), got {tuple(visible.shape)}"
            )
        mask = visible.to(observed.device).expand(n, NUM_JOINTS)
    empty = (~mask.any(-1)).nonzero().flatten()
    if len(empty):
        raise ValueError(
            f"{where}: frame(s) {empty[:5].tolist()} have no visible joint; drop them or mark at least "
            "one joint visible"
        )
    finite = torch.isfinite(observed).all(-1)
    bad = (mask & ~finite).nonzero()
    if len(bad):
        f, j = bad[0].tolist()
        raise ValueCheckError(
            f"{where}: observed holds NaN or inf at {len(bad)} visible joint(s), first frame {f} joint "
            f"{SKELETON_JOINTS[j]!r}; mark such joints hidden (visible=False)"
        )
    # Hidden joints may hold anything (NaN included); zero them so no NaN reaches the gradients.
    obs = torch.where(mask.unsqueeze(-1), observed, observed.new_zeros(()))
    return obs.detach(), mask


def _check_prior(prior: PosePrior) -> None:
    if not isinstance(prior, PosePrior):
        raise TypeError(f"fit_to_joints: prior must be a PosePrior or None, got {type(prior).__name__}")
    if tuple(prior.layout.joints) != BODY_JOINT_NAMES:
        raise ShapeError(
            f"fit_to_joints: the prior models layout {prior.layout.name!r} ({len(prior.layout)} joints); the "
            "fitter optimizes the 21 body joints, so it needs a prior over layout 'body' "
            "(e.g. create(name, layout='body'))"
        )


def _broadcast(x: Tensor, shape: tuple[int, ...], name: str, like: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"fit_to_joints: {name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) not in (shape, shape[1:]):
        raise ShapeError(
            f"fit_to_joints: {name} must have shape {shape} or {shape[1:]}, got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueCheckError(f"fit_to_joints: {name} holds NaN or inf")
    return x.detach().to(like).expand(shape)


def _estimate_root(
    fk: BodyModel, obs: Tensor, mask: Tensor, pose: Tensor, root: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Root orientation by weighted Kabsch of the torso joints, then the translation; (N, 3) each."""
    n = obs.shape[0]
    torso = torch.tensor([j in _TORSO for j in SKELETON_JOINTS], device=obs.device)
    with torch.no_grad():
        zeros = obs.new_zeros(n, 3)
        if root is None:
            rest = fk(pose, zeros, zeros)
            w = mask & torso
            # Too few visible torso joints for a rotation: use every visible joint instead.
            w = torch.where((w.sum(-1, keepdim=True) >= 3), w, mask).to(obs.dtype)
            ws = w.sum(-1, keepdim=True).clamp_min(1)
            p = rest - (w.unsqueeze(-1) * rest).sum(1, keepdim=True) / ws.unsqueeze(-1)
            q = obs - (w.unsqueeze(-1) * obs).sum(1, keepdim=True) / ws.unsqueeze(-1)
            h = (w.unsqueeze(-1) * p).transpose(1, 2) @ q  # (N, 3, 3)
            u, _, vh = torch.linalg.svd(h)
            d = torch.det(vh.transpose(1, 2) @ u.transpose(1, 2)).sign()
            diag = torch.ones(n, 3, dtype=obs.dtype, device=obs.device)
            diag[:, 2] = torch.where(d == 0, torch.ones_like(d), d)
            rot = vh.transpose(1, 2) @ torch.diag_embed(diag) @ u.transpose(1, 2)
            eye = torch.eye(3, dtype=obs.dtype, device=obs.device).expand(n, 3, 3)
            rot = torch.where((w.sum(-1) >= 3).view(n, 1, 1), rot, eye)
            root = matrix_to_axis_angle(rot)
        posed = fk(pose, root, zeros)
        w = torch.where(((mask & torso).sum(-1, keepdim=True) >= 1), mask & torso, mask).to(obs.dtype)
        trans = (w.unsqueeze(-1) * (obs - posed)).sum(1) / w.sum(-1, keepdim=True)
    return root, trans


@contextlib.contextmanager
def _eval_mode(prior: PosePrior | None) -> Iterator[None]:
    """Evaluates the prior in eval mode (no dropout, no data-dependent layers) and restores its mode."""
    if prior is None:
        yield
        return
    was_training = prior.training
    prior.eval()
    try:
        yield
    finally:
        prior.train(was_training)



# ---------------------------------------------------------------------------------- latent space
__all__ += ["LatentFitResult", "fit_to_joints_latent"]  # noqa: F822  (see __getattr__)


def __getattr__(name: str) -> object:
    """Latent-space fitting lives in :mod:`poseprior._latentfit` (imported on first use), part of this API."""
    if name in ("LatentFitResult", "fit_to_joints_latent"):
        from . import _latentfit

        return getattr(_latentfit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
