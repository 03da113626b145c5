"""PoseData: the poses of motion files in the SMPL-X joint order, and what they contain."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..formats.adapters import joint_mask, to_layout
from ..formats.layouts import JointLayout, get_layout

COLUMNS_TO_LAYOUT: dict[int, str] = {156: "smplh", 165: "smplx", 159: "smplx53", 72: "smpl"}
"""The supported widths of ``poses`` and the layout each one means."""


FRAMERATE_KEYS: tuple[str, ...] = ("mocap_framerate", "mocap_frame_rate")
"""Keys holding the frame rate: SMPL-H AMASS uses the first, SMPL-X AMASS the second."""


FPS_RTOL = 0.01
"""Relative tolerance for subsampling: the achieved rate ``source / stride`` must be this close."""


_CANONICAL = get_layout("smplx")


OnError = Literal["raise", "skip"]


@dataclass(eq=False)  # tensors have no boolean equality
class PoseData:
    r"""Poses of one or more motion files, in the SMPL-X joint order.

    Attributes:
        poses: Axis-angle poses, float32, with shape :math:`(N, 55, 3)` in the ``"smplx"`` layout.
            Joints that no source file contains are zero (see ``present``).
        present: Boolean mask with shape :math:`(55,)`: the joints that every source file really
            contains. For SMPL-H files the jaw and eyes are ``False``.
        trans: Root translations, float32, with shape :math:`(N, 3)`.
        file_index: For every frame, the index of its file in ``files``, with shape :math:`(N,)`.
        files: The paths of the source files.
        source_layouts: For every file, the layout its ``poses`` were stored in (``"smplh"``, ...).
        fps: For every file, its frame rate after subsampling, or ``None`` if the file records none.
        betas: For every file, its shape coefficients (empty if the file has none).
        genders: For every file, its gender string (``"unknown"`` if the file has none).
        skipped: Files that were not loaded (with ``on_error="skip"``) and why: ``(path, reason)``.
    """

    poses: Tensor
    present: Tensor
    trans: Tensor
    file_index: Tensor
    files: list[str]
    source_layouts: list[str]
    fps: list[float | None]
    betas: list[np.ndarray]
    genders: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.poses.shape[0])

    @property
    def root_orient(self) -> Tensor:
        r"""The global (root) orientation, ``poses[:, 0]``, with shape :math:`(N, 3)`."""
        return self.poses[:, 0]

    @property
    def num_files(self) -> int:
        """The number of files loaded."""
        return len(self.files)

    def poses_for(self, layout: str | JointLayout, *, missing: Literal["error", "zero"] = "error") -> Tensor:
        r"""The poses of the joints of ``layout``, selected by name.

        Arguments:
            layout: A layout name (``"body"``, ``"body_hands"``, ``"smplx"``, ...) or a
                :class:`~poseprior.formats.JointLayout`.
            missing: ``"error"`` (default) raises :class:`~poseprior.DataError` if a requested
                joint is absent from the source files (see ``present``); ``"zero"`` returns the
                zeros stored for it.

        Returns:
            A new tensor with shape :math:`(N, J, 3)`.
        """
        layout = get_layout(layout)
        outside = [j for j in layout.joints if j not in _CANONICAL.joints]
        if outside:
            raise DataError(
                f"PoseData.poses_for: layout {layout.name!r} has joint(s) {', '.join(outside)} that the "
                "SMPL-X order of PoseData does not have (e.g. SMPL's hand joints); choose a layout "
                "made of SMPL-X joints such as 'body'"
            )
        if missing != "zero":
            if missing != "error":
                raise ValueError(f"PoseData.poses_for: missing must be 'error' or 'zero', got {missing!r}")
            present = set(_CANONICAL.joints[i] for i in self.present.nonzero().flatten().tolist())
            absent = [j for j in layout.joints if j not in present]
            if absent:
                layouts = ", ".join(sorted(set(self.source_layouts)))
                raise DataError(
                    f"PoseData.poses_for({layout.name!r}): joint(s) {', '.join(absent)} are absent from "
                    f"the source files (layouts: {layouts}) and only zero-filled; choose a layout "
                    "without them (e.g. 'body' or 'body_hands'), select files that have them, or pass "
                    "missing='zero' to use the zeros knowingly"
                )
        return to_layout(self.poses, _CANONICAL, layout)

    def present_for(self, layout: str | JointLayout) -> Tensor:
        r"""Which joints of ``layout`` the source files contain, a boolean tensor with shape :math:`(J,)`."""
        layout = get_layout(layout)
        have = {_CANONICAL.joints[i] for i in self.present.nonzero().flatten().tolist()}
        return torch.tensor([j in have for j in layout.joints], dtype=torch.bool)

    def select_frames(self, keep: Tensor) -> PoseData:
        r"""A new :class:`PoseData` with the frames where ``keep`` (boolean, shape :math:`(N,)`) is True.

        Every file stays listed (a file may keep no frame), so file-level splits still apply.
        """
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or keep.shape != (len(self),):
            got = tuple(keep.shape) if isinstance(keep, Tensor) else type(keep).__name__
            raise DataError(
                f"PoseData.select_frames: expected a boolean tensor of shape ({len(self)},), got {got}"
            )
        rows = keep.nonzero().flatten()
        return dataclasses.replace(
            self, poses=self.poses[rows], trans=self.trans[rows], file_index=self.file_index[rows]
        )

    def select_files(self, names: Iterable[str]) -> PoseData:
        """A new :class:`PoseData` with the frames of the files named (by basename), in that order.

        Arguments:
            names: File basenames such as ``"cmu_01_01.npz"`` (a path's basename is also accepted).

        Returns:
            The selection; ``present`` is recomputed for the selected files.
        """
        names = [Path(n).name for n in names]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise DataError(f"PoseData.select_files: names given more than once: {', '.join(dup)}")
        by_name: dict[str, list[int]] = {}
        for i, f in enumerate(self.files):
            by_name.setdefault(Path(f).name, []).append(i)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise DataError(
                f"PoseData.select_files: {len(unknown)} file(s) not in this data: {', '.join(unknown[:10])}"
                f"{' ...' if len(unknown) > 10 else ''}; the data holds {len(self.files)} files "
                "(see .files)"
            )
        ambiguous = [n for n in names if len(by_name[n]) > 1]
        if ambiguous:
            raise DataError(
                f"PoseData.select_files: basename(s) {', '.join(ambiguous)} match several files; "
                "select from data loaded from one folder level"
            )
        chosen = [by_name[n][0] for n in names]
        frames = [(self.file_index == i).nonzero().flatten() for i in chosen]
        rows = torch.cat(frames) if frames else torch.zeros(0, dtype=torch.long)
        new_index = (
            torch.cat([torch.full((len(f),), k, dtype=torch.long) for k, f in enumerate(frames)])
            if frames
            else torch.zeros(0, dtype=torch.long)
        )
        layouts = [self.source_layouts[i] for i in chosen]
        present = self.present.clone()
        if chosen and all(_known_layout(s) for s in layouts):
            present = _present_for(layouts)
        return PoseData(
            poses=self.poses.index_select(0, rows),
            present=present,
            trans=self.trans.index_select(0, rows),
            file_index=new_index,
            files=[self.files[i] for i in chosen],
            source_layouts=layouts,
            fps=[self.fps[i] for i in chosen],
            betas=[self.betas[i].copy() for i in chosen],
            genders=[self.genders[i] for i in chosen],
            skipped=list(self.skipped),
        )

    def describe(self) -> str:
        """A short human-readable summary: frames, files, layouts, frame rates, absent joints."""
        counts: dict[str, int] = {}
        for s in self.source_layouts:
            counts[s] = counts.get(s, 0) + 1
        layouts = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
        rates = sorted({r for r in self.fps if r is not None})
        fps = ", ".join(f"{r:g}" for r in rates) or "unknown"
        if any(r is None for r in self.fps):
            fps += " (some files unknown)"
        absent = [_CANONICAL.joints[i] for i in (~self.present).nonzero().flatten().tolist()]
        lines = [
            f"PoseData: {len(self)} frames from {len(self.files)} files ({layouts})",
            f"  fps: {fps}",
            f"  joints present: {int(self.present.sum())} of {len(_CANONICAL)}"
            + (f" (absent, zero-filled: {', '.join(absent)})" if absent else ""),
        ]
        if self.skipped:
            lines.append(f"  skipped: {len(self.skipped)} file(s) (see .skipped)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"PoseData(frames={len(self)}, files={len(self.files)}, present={int(self.present.sum())}/55)"


_PRESENT_CACHE: dict[str, Tensor] = {}


def _known_layout(name: str) -> bool:
    return name in COLUMNS_TO_LAYOUT.values()


_PRESENT_CACHE: dict[str, Tensor] = {}


def _present_for(layouts: Sequence[str]) -> Tensor:
    """The SMPL-X joints contained in every one of ``layouts``."""
    present = torch.ones(len(_CANONICAL), dtype=torch.bool)
    for name in set(layouts):
        if name not in _PRESENT_CACHE:
            _PRESENT_CACHE[name] = joint_mask(name, _CANONICAL)
        present &= _PRESENT_CACHE[name]
    return present


def concat(parts: Sequence[PoseData]) -> PoseData:
    r"""The frames of several :class:`PoseData` in one, in order (e.g. the train splits of two folders).

    A joint is present only if it is present in every part.
    """
    parts = list(parts)
    if not parts:
        raise DataError("concat: got no PoseData; pass at least one")
    offsets, files = [], []
    for part in parts:
        offsets.append(len(files))
        files += part.files
    return PoseData(
        poses=torch.cat([p.poses for p in parts]),
        present=torch.stack([p.present for p in parts]).all(0),
        trans=torch.cat([p.trans for p in parts]),
        file_index=torch.cat([p.file_index + o for p, o in zip(parts, offsets, strict=False)]),
        files=files,
        source_layouts=[s for p in parts for s in p.source_layouts],
        fps=[f for p in parts for f in p.fps],
        betas=[b for p in parts for b in p.betas],
        genders=[g for p in parts for g in p.genders],
        skipped=[s for p in parts for s in p.skipped],
    )
