r"""Loading AMASS-format motion files (``.npz``) into one canonical SMPL-X pose table.

An AMASS npz holds ``poses`` (axis-angle, one row per frame), ``trans``, ``betas``, ``gender``
and the frame rate. The layout of ``poses`` is recognised from its number of columns:

=========  ===========  ================================================================
columns    layout       notes
=========  ===========  ================================================================
156        ``smplh``    52 joints (AMASS SMPL-H release); no jaw, no eyes
165        ``smplx``    55 joints (AMASS SMPL-X release)
159        ``smplx53``  53 joints ``[global_orient, 21 body, jaw, 30 hand]``; no eyes
72         ``smpl``     24 joints; no fingers, jaw or eyes. SMPL's two hand joints (22, 23:
                        a rigid hand rotated at the wrist) have no SMPL-X equivalent and
                        are **dropped**
=========  ===========  ================================================================

Every file is converted **by joint name** to the SMPL-X order (55 joints). Joints a file lacks
are zero in :attr:`PoseData.poses` and marked absent in :attr:`PoseData.present`; asking for
them with :meth:`PoseData.poses_for` raises, so a zero that was never measured cannot pass for
data. Hands are flat-relative, as AMASS stores them (see
:func:`poseprior.formats.adapters.hand_relative_to_flat`).

Files are read with ``np.load(path, allow_pickle=False)``: nothing is ever unpickled, and a file
whose arrays need pickle is reported as an error.

Example:
    >>> from poseprior.data import sample_path
    >>> data = load_split(sample_path(), "val")
    >>> data.poses_for("body").shape
    torch.Size([3119, 21, 3])
"""

from __future__ import annotations

from .posedata import COLUMNS_TO_LAYOUT, FPS_RTOL, FRAMERATE_KEYS, PoseData, concat
from .read import load_folder, load_npz, read_npz
from .splits import load_split, load_splits
from .write import save_npz, write_npz

__all__ = [
    "COLUMNS_TO_LAYOUT",
    "FPS_RTOL",
    "FRAMERATE_KEYS",
    "PoseData",
    "concat",
    "load_folder",
    "load_npz",
    "load_split",
    "load_splits",
    "read_npz",
    "save_npz",
    "write_npz",
]
