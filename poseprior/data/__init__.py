r"""Small data sets shipped inside the package: real CMU motion capture, retargeted to SMPL-H.

Two AMASS-style folders (SMPL-H ``.npz`` files with a ``splits.json``), both from the CMU
Graphics Lab Motion Capture Database (free for any use including commercial products; see each
folder's ``README.md`` for provenance, conversion, limits, licence and the acknowledgement CMU
asks for):

- ``cmu/``: 97 clips, 17,668 frames at 30 fps, a file-level split (train 81 files / 14,549
  frames, val 16 files / 3,119 frames); 8 actions (walking, basketball, signals, jumping, ...).
- ``cmu_extra/``: 80 more trials, 40,840 frames at 30 fps (salsa, Indian dance, martial arts,
  playground, walks, runs, jumps), a subject-level split: its val subjects (Indian dance, and
  reach/jump/tiptoe) appear in no train file of either folder, so they measure what a prior does
  on people and motion it has never seen.

:func:`load_bundled` gives the splits the project trains and scores on: ``"train"`` (the union
of both train splits), ``"val"`` (``cmu``'s val split) and ``"unseen"`` (``cmu_extra``'s val
split, unseen subjects).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ..amass import PoseData

__all__ = ["SAMPLES", "load_bundled", "sample_path", "training_splits"]

SAMPLES = ("cmu", "cmu_extra")
"""The names of the bundled folders."""

SCREEN_MARGIN_DEG = 30.0
"""Training frames with a value outside its anatomical range by more than this are screened out."""


def sample_path(name: str = "cmu") -> Path:
    r"""The folder of a bundled sample (AMASS-style SMPL-H npz files and ``splits.json``).

    Arguments:
        name: ``"cmu"`` (the default) or ``"cmu_extra"``.

    Returns:
        The path of the folder, for :func:`poseprior.amass.load_split` or
        :func:`poseprior.amass.load_folder`.

    Example:
        >>> (sample_path() / "splits.json").is_file()
        True
    """
    if name not in SAMPLES:
        raise ValueError(
            f"sample_path: no bundled sample {name!r}; the bundled samples are {', '.join(SAMPLES)}"
        )
    # The package is installed as plain files (not zipped), so the folder is a real directory;
    # Path(__file__) avoids importlib.resources' temporary extraction for zipped installs.
    path = Path(__file__).resolve().parent / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"the bundled sample {name!r} is missing at {path}; reinstall poseprior (the wheel must include "
            f"poseprior/data/{name}/*.npz as package data)"
        )
    return path


def load_bundled(split: Literal["train", "val", "unseen"], *, screen: bool = True) -> PoseData:
    r"""A split of the bundled CMU data.

    Arguments:
        split: ``"train"``: the union of the train splits of ``cmu`` and ``cmu_extra``;
            ``"val"``: ``cmu``'s file-level val split (actions also seen in training);
            ``"unseen"``: ``cmu_extra``'s val split (subjects in no train file).
        screen: For ``"train"`` only: drop the frames with a body value outside its anatomical
            range by more than :data:`SCREEN_MARGIN_DEG` degrees
            (:func:`poseprior.formats.ranges.plausible`): defects of the retargeting, mostly a
            head turned about 170 degrees in two salsa files (see ``cmu_extra/README.md``). The
            validation splits are never screened.

    Returns:
        The poses, as :class:`~poseprior.amass.PoseData`.
    """
    from ..amass import concat, load_split
    from ..formats.ranges import plausible

    if split == "train":
        data = concat([load_split(sample_path(name), "train") for name in SAMPLES])
        return (
            data.select_frames(plausible(data.poses_for("body"), margin_deg=SCREEN_MARGIN_DEG))
            if screen
            else data
        )
    if split == "val":
        return load_split(sample_path("cmu"), "val")
    if split == "unseen":
        return load_split(sample_path("cmu_extra"), "val")
    raise ValueError(f"load_bundled: split must be 'train', 'val' or 'unseen', got {split!r}")


def training_splits(folder: str | Path | None = None) -> tuple[PoseData, PoseData, PoseData | None]:
    r"""The train, val and unseen splits the command line and the benchmarks use.

    Arguments:
        folder: A folder with AMASS-format files and a ``splits.json``, or ``None`` for the
            bundled data (:func:`load_bundled`: the screened union of both train splits, ``cmu``'s
            val split, ``cmu_extra``'s val split of unseen subjects).

    Returns:
        ``(train, val, unseen)``; for a folder, ``unseen`` is its ``"unseen"`` split if
        ``splits.json`` has one, else ``None``. A folder's data is used as it is (not screened).
    """
    if folder is None:
        return load_bundled("train"), load_bundled("val"), load_bundled("unseen")
    from ..amass import load_split, load_splits

    folder = Path(folder)
    has_unseen = "unseen" in load_splits(folder / "splits.json")
    unseen = load_split(folder, "unseen") if has_unseen else None
    return load_split(folder, "train"), load_split(folder, "val"), unseen
