r"""Small data sets shipped inside the package.

``cmu/`` holds 97 CMU motion-capture clips retargeted to SMPL-H body poses (AMASS-style npz,
17668 frames at 30 fps) with a file-level ``splits.json`` (train 81 files / 14549 frames, val 16
files / 3119 frames). See ``cmu/README.md`` for provenance, licence and acknowledgement.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["sample_path"]


def sample_path() -> Path:
    r"""The folder of the bundled CMU sample (AMASS-style SMPL-H npz files and ``splits.json``).

    Returns:
        The path of the folder, for :func:`poseprior.amass.load_split` or
        :func:`poseprior.amass.load_folder`.

    Example:
        >>> (sample_path() / "splits.json").is_file()
        True
    """
    # The package is installed as plain files (not zipped), so the folder is a real directory;
    # Path(__file__) avoids importlib.resources' temporary extraction for zipped installs.
    path = Path(__file__).resolve().parent / "cmu"
    if not path.is_dir():
        raise FileNotFoundError(
            f"the bundled CMU sample is missing at {path}; reinstall poseprior (the wheel must include "
            "poseprior/data/cmu/*.npz as package data)"
        )
    return path
