"""The AMASS-format loader: layouts by column count, frame rates, splits, and every error path."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from poseprior.amass import PoseData, load_folder, load_npz, load_split, load_splits
from poseprior.data import sample_path
from poseprior.errors import DataError
from poseprior.formats.layouts import LAYOUTS

SMPLX = LAYOUTS["smplx"]
COLUMNS = {156: "smplh", 165: "smplx", 159: "smplx53", 72: "smpl"}


def joint_ids(layout: str) -> np.ndarray:
    """Per joint of ``layout`` a distinct value: 1 + its SMPL-X index (100+ for SMPL's hand joints)."""
    ids = [SMPLX.index(j) + 1 if j in SMPLX.joints else 100 + k for k, j in enumerate(LAYOUTS[layout].joints)]
    return np.asarray(ids, dtype=np.float64)


def write_amass(
    path: Path,
    *,
    columns: int = 156,
    frames: int = 10,
    fps: float | None = 30.0,
    fps_key: str = "mocap_framerate",
    poses: np.ndarray | None = None,
    **extra: object,
) -> Path:
    """Writes an AMASS-style npz whose joint j holds ids[j] * 0.01 * (1, 2, 3) + frame * 1e-3."""
    if poses is None:
        ids = joint_ids(COLUMNS[columns])
        per_joint = ids[:, None] * 0.01 * np.array([1.0, 2.0, 3.0])
        poses = per_joint.reshape(1, -1) + np.arange(frames)[:, None] * 1e-3
    arrays: dict[str, object] = {
        "poses": poses,
        "trans": np.zeros((len(poses), 3)) + np.arange(len(poses))[:, None],
        "betas": np.arange(16, dtype=np.float64),
        "gender": np.array("female"),
    }
    if fps is not None:
        arrays[fps_key] = np.array(fps)
    arrays.update(extra)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


# ---------------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("columns", sorted(COLUMNS))
@pytest.mark.parametrize("fps_key", ["mocap_framerate", "mocap_frame_rate"])
def test_columns_load_into_smplx_slots(tmp_path: Path, columns: int, fps_key: str) -> None:
    layout = COLUMNS[columns]
    path = write_amass(tmp_path / f"m{columns}.npz", columns=columns, fps_key=fps_key, fps=60.0)
    data = load_npz(path)
    assert isinstance(data, PoseData)
    assert data.poses.shape == (10, 55, 3) and data.poses.dtype == torch.float32
    assert data.source_layouts == [layout] and data.fps == [60.0]
    assert data.genders == ["female"] and np.array_equal(data.betas[0], np.arange(16))
    assert data.files == [str(path)] and torch.equal(data.file_index, torch.zeros(10, dtype=torch.long))
    present_names = [SMPLX.joints[i] for i in data.present.nonzero().flatten().tolist()]
    assert present_names == [j for j in SMPLX.joints if j in LAYOUTS[layout].joints]
    for i, name in enumerate(SMPLX.joints):
        got = data.poses[0, i]
        if data.present[i]:  # every joint lands in the slot of its name
            want = (i + 1) * 0.01 * torch.tensor([1.0, 2.0, 3.0])
            assert torch.allclose(got, want, atol=1e-6), name
        else:  # explicit zero fill, recorded in `present`
            assert torch.equal(got, torch.zeros(3)), name
    assert torch.allclose(data.poses[:, 1, 0] - data.poses[0, 1, 0], torch.arange(10) * 1e-3, atol=1e-6)
    assert torch.equal(data.root_orient, data.poses[:, 0])
    assert torch.equal(data.trans[:, 0], torch.arange(10, dtype=torch.float32))


def test_known_joint_index(tmp_path: Path) -> None:
    poses = np.zeros((3, 156))
    poses[:, 3 * 37 : 3 * 37 + 3] = [0.5, -0.25, 0.125]  # SMPL-H joint 37 = right_index1
    data = load_npz(write_amass(tmp_path / "a.npz", poses=poses))
    assert LAYOUTS["smplh"].joints[37] == SMPLX.joints[40] == "right_index1"
    assert torch.equal(data.poses[:, 40], torch.tensor([0.5, -0.25, 0.125]).expand(3, 3))
    assert int(data.poses.abs().gt(0).sum()) == 9


def test_smpl_hand_joints_are_dropped(tmp_path: Path) -> None:
    data = load_npz(write_amass(tmp_path / "s.npz", columns=72))
    ids = set(np.round(data.poses[0, :, 0].numpy() / 0.01).astype(int).tolist())
    assert not ids & {100 + 22, 100 + 23}  # SMPL's left_hand/right_hand went nowhere
    assert int(data.present.sum()) == 22


def test_smplh_present_mask_and_poses_for(tmp_path: Path) -> None:
    data = load_npz(write_amass(tmp_path / "h.npz"))
    absent = [SMPLX.joints[i] for i in (~data.present).nonzero().flatten().tolist()]
    assert absent == ["jaw", "left_eye", "right_eye"]
    with pytest.raises(
        DataError, match=r"poses_for\('smplx'\): joint\(s\) jaw, left_eye, right_eye are absent"
    ):
        data.poses_for("smplx")
    assert data.poses_for("smplx", missing="zero").shape == (10, 55, 3)
    body_hands = data.poses_for("body_hands")
    assert body_hands.shape == (10, 51, 3)
    body_hands.add_(1)  # a copy: the data is untouched
    assert torch.allclose(data.poses[0, 1], 0.02 * torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(
        DataError, match=r"layout 'smpl' has joint\(s\) left_hand, right_hand that the SMPL-X order"
    ):
        data.poses_for("smpl")
    with pytest.raises(ValueError, match="missing must be 'error' or 'zero', got 'skip'"):
        data.poses_for("body", missing="skip")  # type: ignore[arg-type]


def test_mixed_layouts_present_is_common_joints(tmp_path: Path) -> None:
    write_amass(tmp_path / "a_smplx.npz", columns=165)
    write_amass(tmp_path / "b_smplh.npz", columns=156, frames=4)
    data = load_folder(tmp_path)
    assert data.source_layouts == ["smplx", "smplh"] and len(data) == 14
    assert not data.present[22:25].any() and int(data.present.sum()) == 52
    only_x = data.select_files(["a_smplx.npz"])
    assert bool(only_x.present.all()) and only_x.poses_for("smplx").shape == (10, 55, 3)
    assert "2 files (smplh: 1, smplx: 1)" in data.describe()
    assert "absent, zero-filled: jaw, left_eye, right_eye" in data.describe()


# ---------------------------------------------------------------------------------- frame rates
def test_subsample_120_to_30(tmp_path: Path) -> None:
    data = load_npz(write_amass(tmp_path / "f.npz", frames=120, fps=120.0), fps=30)
    assert len(data) == 30 and data.fps == [30.0]
    assert torch.equal(data.trans[:, 0], torch.arange(0, 120, 4, dtype=torch.float32))


def test_subsample_within_tolerance(tmp_path: Path) -> None:
    data = load_npz(
        write_amass(tmp_path / "f.npz", frames=12, fps=119.88, fps_key="mocap_frame_rate"), fps=30
    )
    assert len(data) == 3 and data.fps == [pytest.approx(29.97)]


def test_subsample_errors(tmp_path: Path) -> None:
    path = write_amass(tmp_path / "f.npz", fps=100.0)
    with pytest.raises(
        DataError,
        match=r"f.npz: 100 fps cannot be subsampled to 30 fps by an integer stride"
        r".*pass fps as 100/k, e.g. .*33.3333.*25",
    ):
        load_npz(path, fps=30)
    with pytest.raises(DataError, match=r"cannot subsample 100 fps to a higher rate 120 fps; pass fps=None"):
        load_npz(path, fps=120)
    with pytest.raises(ValueError, match="fps must be a positive number or None, got -5"):
        load_npz(path, fps=-5)


def test_missing_frame_rate(tmp_path: Path) -> None:
    path = write_amass(tmp_path / "n.npz", fps=None)
    assert load_npz(path).fps == [None]
    assert "fps: unknown" in load_npz(path).describe()
    with pytest.raises(
        DataError,
        match=r"n.npz: no frame rate \(mocap_framerate or mocap_frame_rate; "
        r"keys found: .*but fps=30 was requested",
    ):
        load_npz(path, fps=30)


def test_bad_frame_rate_value(tmp_path: Path) -> None:
    path = write_amass(tmp_path / "z.npz", fps=0.0)
    with pytest.raises(DataError, match=r"'mocap_framerate' is 0.0; expected a positive frame rate"):
        load_npz(path)


# ---------------------------------------------------------------------------------- bad files
def test_file_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.npz: file not found"):
        load_npz(tmp_path / "nope.npz")


def test_corrupt_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(DataError, match=r"junk.npz: not an npz archive .*corrupt"):
        load_npz(path)


def test_truncated_real_file(tmp_path: Path) -> None:
    real = (sample_path() / "cmu_01_01.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(real[: len(real) // 2])
    with pytest.raises(DataError, match=r"cut.npz: cannot be read as an npz archive \(BadZipFile.*truncated"):
        load_npz(path)


def test_corrupted_member_data(tmp_path: Path) -> None:
    path = write_amass(tmp_path / "crc.npz", frames=200)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"poses.npy") + 2000  # inside the poses array, zip directory intact
    raw[start : start + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with pytest.raises(
        DataError, match=r"crc.npz: cannot read key 'poses' \(BadZipFile: Bad CRC-32.*corrupt or truncated"
    ):
        load_npz(path)


def test_npy_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "single.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros((3, 156)))
    with pytest.raises(DataError, match=r"holds a single .npy array of shape \(3, 156\), not an npz archive"):
        load_npz(path)


def test_missing_poses_key(tmp_path: Path) -> None:
    path = tmp_path / "k.npz"
    np.savez(path, pose_body=np.zeros((3, 63)), trans=np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"k.npz: no 'poses' key \(keys found: pose_body, trans\)"):
        load_npz(path)


def test_wrong_column_count(tmp_path: Path) -> None:
    path = write_amass(tmp_path / "w.npz", poses=np.zeros((5, 63)))
    with pytest.raises(
        DataError,
        match=r"'poses' has shape \(5, 63\); expected \(N, C\) with C one of "
        r".*156 \(smplh\), 165 \(smplx\), 159 \(smplx53\), 72 \(smpl\)",
    ):
        load_npz(path)


def test_nan_frames(tmp_path: Path) -> None:
    poses = np.zeros((50, 156))
    poses[[3, 7, 8], 10] = np.nan
    poses[20, 0] = np.inf
    with pytest.raises(
        DataError,
        match=r"n.npz: 4 of 50 frames hold NaN or inf in 'poses' \(first frame indices: 3, 7, 8, 20\)",
    ):
        load_npz(write_amass(tmp_path / "n.npz", poses=poses))


def test_nan_trans(tmp_path: Path) -> None:
    trans = np.zeros((4, 3))
    trans[2, 1] = np.nan
    with pytest.raises(
        DataError, match=r"1 of 4 frames hold NaN or inf in 'trans' \(first frame indices: 2\)"
    ):
        load_npz(write_amass(tmp_path / "t.npz", frames=4, trans=trans))


def test_empty_poses(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"e.npz: 'poses' has zero frames \(shape \(0, 156\)\)"):
        load_npz(write_amass(tmp_path / "e.npz", poses=np.zeros((0, 156))))


def test_trans_length_mismatch_and_missing(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"'trans' has shape \(7, 3\) .*but 'poses' has 10 frames; "
        r"expected 'trans' with shape \(10, 3\)",
    ):
        load_npz(write_amass(tmp_path / "m.npz", trans=np.zeros((7, 3))))
    path = tmp_path / "nt.npz"
    np.savez(path, poses=np.zeros((2, 156)))
    with pytest.raises(DataError, match=r"nt.npz: no 'trans' key \(keys found: poses\)"):
        load_npz(path)


UNPICKLED: list[str] = []


def _trap() -> str:
    UNPICKLED.append("unpickled!")
    return "trap"


class _Trap:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_trap, ())


def test_pickled_object_array_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    np.savez(path, poses=np.array([_Trap(), _Trap()], dtype=object), trans=np.zeros((2, 3)))
    with pytest.raises(
        DataError, match=r"p.npz: key 'poses' holds a pickled object array, which poseprior never loads"
    ):
        load_npz(path)
    gender = tmp_path / "g.npz"
    write_amass(gender, gender=np.array([_Trap()], dtype=object))
    with pytest.raises(DataError, match=r"g.npz: key 'gender' holds a pickled object array"):
        load_npz(gender)
    whole = tmp_path / "whole.npz"
    import pickle

    whole.write_bytes(pickle.dumps({"poses": _Trap()}))
    with pytest.raises(DataError, match=r"whole.npz: not an npz archive .*never does"):
        load_npz(whole)
    assert UNPICKLED == []


def test_gender_bytes_and_absent(tmp_path: Path) -> None:
    assert load_npz(write_amass(tmp_path / "b.npz", gender=np.array(b"male"))).genders == ["male"]
    assert load_npz(write_amass(tmp_path / "n.npz", gender=None, betas=None)).genders == ["unknown"]


# ---------------------------------------------------------------------------------- folders
def test_load_folder_recursive_sorted_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write_amass(tmp_path / "sub" / "b.npz", frames=3)
    write_amass(tmp_path / "a.npz", frames=2)
    write_amass(tmp_path / "c.npz", frames=4)
    (tmp_path / "notes.txt").write_text("not data")
    data = load_folder(tmp_path)
    assert [Path(f).name for f in data.files] == ["a.npz", "c.npz", "b.npz"]  # sorted by relative path
    assert data.file_index.tolist() == [0] * 2 + [1] * 4 + [2] * 3
    subset = load_folder(tmp_path, files=["b.npz", "a.npz"])
    assert [Path(f).name for f in subset.files] == ["b.npz", "a.npz"] and len(subset) == 5
    assert len(load_folder(tmp_path, files=["sub/b.npz"])) == 3


def test_load_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"load_folder: folder .*missing does not exist"):
        load_folder(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"load_folder: no .npz files under"):
        load_folder(tmp_path)
    with pytest.raises(DataError, match=r"is not a folder; use load_npz"):
        load_folder(tmp_path / "readme.txt")
    write_amass(tmp_path / "a.npz")
    with pytest.raises(DataError, match=r"2 file\(s\) requested are not under .*: x.npz, y.npz"):
        load_folder(tmp_path, files=["a.npz", "x.npz", "y.npz"])
    with pytest.raises(DataError, match="files is empty; pass None"):
        load_folder(tmp_path, files=[])
    with pytest.raises(TypeError, match="files must be a list of file names, not a single string"):
        load_folder(tmp_path, files="a.npz")
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip', got 'ignore'"):
        load_folder(tmp_path, on_error="ignore")  # type: ignore[arg-type]
    (tmp_path / "sub").mkdir()
    write_amass(tmp_path / "sub" / "dup.npz")
    write_amass(tmp_path / "dup.npz")
    (tmp_path / "dup.npz").unlink()
    (tmp_path / "sub2").mkdir()
    write_amass(tmp_path / "sub2" / "dup.npz")
    with pytest.raises(DataError, match=r"'dup.npz' matches several files .*sub/dup.npz, sub2/dup.npz"):
        load_folder(tmp_path, files=["dup.npz"])


def test_on_error_skip_counts_and_warns(tmp_path: Path) -> None:
    write_amass(tmp_path / "good1.npz", frames=3)
    write_amass(tmp_path / "good2.npz", frames=5)
    (tmp_path / "junk.npz").write_bytes(os.urandom(100))
    write_amass(tmp_path / "wide.npz", poses=np.zeros((2, 99)))
    with pytest.raises(DataError, match=r"junk.npz: not an npz archive"):
        load_folder(tmp_path)
    with pytest.warns(
        UserWarning, match=r"skipped 2 of 4 file\(s\) .*junk.npz: .*wide.npz: .*PoseData.skipped"
    ):
        data = load_folder(tmp_path, on_error="skip")
    assert len(data) == 8 and [Path(f).name for f in data.files] == ["good1.npz", "good2.npz"]
    assert [Path(p).name for p, _ in data.skipped] == ["junk.npz", "wide.npz"]
    assert "supported column counts" in data.skipped[1][1]
    assert "skipped: 2 file(s)" in data.describe()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped: no warning
        load_folder(tmp_path, files=["good1.npz"], on_error="skip")


def test_on_error_skip_everything_bad(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"\x00" * 10)
    with (
        pytest.warns(UserWarning, match="skipped 1 of 1"),
        pytest.raises(DataError, match=r"none of the 1 file\(s\) could be loaded: junk.npz"),
    ):
        load_folder(tmp_path, on_error="skip")


def test_select_files(tmp_path: Path) -> None:
    write_amass(tmp_path / "a.npz", frames=2)
    write_amass(tmp_path / "b.npz", frames=3, fps=60.0)
    data = load_folder(tmp_path)
    sel = data.select_files(["b.npz"])
    assert len(sel) == 3 and sel.fps == [60.0] and sel.file_index.tolist() == [0, 0, 0]
    assert torch.equal(sel.poses, data.poses[2:])
    with pytest.raises(DataError, match=r"select_files: 1 file\(s\) not in this data: c.npz"):
        data.select_files(["a.npz", "c.npz"])
    with pytest.raises(DataError, match="names given more than once: a.npz"):
        data.select_files(["a.npz", "a.npz"])


# ---------------------------------------------------------------------------------- splits
def test_load_splits_validation(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    with pytest.raises(DataError, match=r"splits.json not found"):
        load_splits(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"is not valid JSON"):
        load_splits(path)
    path.write_text(json.dumps(["a.npz"]))
    with pytest.raises(DataError, match=r"holds a list; expected a non-empty object mapping split names"):
        load_splits(path)
    path.write_text(json.dumps({"train": []}))
    with pytest.raises(DataError, match=r"split 'train' must be a non-empty list of file names, got \[\]"):
        load_splits(path)
    path.write_text(json.dumps({"train": ["a.npz", "a.npz"]}))
    with pytest.raises(DataError, match=r"split 'train' lists a.npz more than once"):
        load_splits(path)
    path.write_text(json.dumps({"train": ["a.npz"], "val": ["a.npz"]}))
    with pytest.raises(
        DataError, match=r"'a.npz' is in both splits 'train' and 'val'; the splits must be disjoint"
    ):
        load_splits(path)
    path.write_text(json.dumps({"train": ["a.npz"], "val": ["b.npz"]}))
    assert load_splits(path) == {"train": ["a.npz"], "val": ["b.npz"]}


def test_load_split_errors(tmp_path: Path) -> None:
    write_amass(tmp_path / "a.npz")
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["a.npz"], "val": ["gone.npz"]}))
    assert len(load_split(tmp_path, "train")) == 10
    with pytest.raises(
        DataError, match=r"no split 'test' in the splits file; available splits: 'train', 'val'"
    ):
        load_split(tmp_path, "test")
    with pytest.raises(DataError, match=r"1 file\(s\) requested are not under .*: gone.npz"):
        load_split(tmp_path, "val")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"all": ["a.npz"]}))
    assert load_split(tmp_path, "all", splits_file=other).files == [str(tmp_path / "a.npz")]


def _readme_frames() -> dict[str, tuple[int, str]]:
    text = (sample_path() / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+\.npz)` \| (\d+) \| (\w+) \|$", text, flags=re.M)
    return {name: (int(n), split) for name, n, split in rows}


def test_bundled_sample_splits_match_readme() -> None:
    readme = _readme_frames()
    assert len(readme) == 97
    expected = {"train": (81, 14549), "val": (16, 3119)}
    for split, (n_files, n_frames) in expected.items():
        data = load_split(sample_path(), split)
        assert (data.num_files, len(data)) == (n_files, n_frames)
        assert data.skipped == [] and set(data.source_layouts) == {"smplh"} and set(data.fps) == {30.0}
        counts = torch.bincount(data.file_index, minlength=data.num_files).tolist()
        for f, c in zip(data.files, counts, strict=True):
            assert readme[Path(f).name] == (c, split)
        assert not data.present[22:25].any() and int(data.present.sum()) == 52
        with pytest.raises(DataError, match="jaw"):
            data.poses_for("smplx")
        assert torch.isfinite(data.poses).all()


def test_bundled_sample_is_small_and_complete() -> None:
    folder = sample_path()
    files = sorted(p.name for p in folder.iterdir())
    assert len([f for f in files if f.endswith(".npz")]) == 97
    assert "README.md" in files and "splits.json" in files
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5 * 1024 * 1024
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "The data used in this project was obtained from mocap.cs.cmu.edu" in readme


# ---------------------------------------------------------------------------------- writing
def test_save_npz_round_trips_through_load_npz(tmp_path: Path) -> None:
    from poseprior.amass import save_npz

    x = 0.1 * torch.randn(4, 21, 3, generator=torch.Generator().manual_seed(0))
    # np.savez's rule: ".npz" is appended to a name without it; the path written is returned.
    path = save_npz(tmp_path / "poses", x, "body", fps=60.0, extra={"raw": x.numpy()})
    assert path == tmp_path / "poses.npz" and path.is_file()
    data = load_npz(path)
    assert data.source_layouts == ["smplh"] and data.fps == [60.0]
    torch.testing.assert_close(data.poses_for("body"), x)
    assert not data.poses[:, 0].any()  # the root (not in the layout) is zero
    with np.load(path) as f:
        np.testing.assert_array_equal(f["raw"], x.numpy())
        assert str(f["gender"]) == "neutral"
    assert save_npz(tmp_path / "b.npz", x, "body") == tmp_path / "b.npz"


def test_write_npz_is_atomic(tmp_path: Path) -> None:
    from poseprior.amass import write_npz

    path = tmp_path / "out.data"  # any suffix: the exact name is written
    assert write_npz(path, {"a": np.arange(3)}) == path
    with np.load(path) as f:
        np.testing.assert_array_equal(f["a"], np.arange(3))

    class Unsaveable:  # np.savez fails on it halfway through writing the archive
        def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_npz(path, {"b": np.ones(1000), "c": Unsaveable()})
    with np.load(path) as f:  # the previous file is intact, no temporary file is left behind
        assert f.files == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.data"]


def test_read_npz_reads_every_array_and_never_unpickles(tmp_path: Path) -> None:
    from poseprior.amass import read_npz

    np.savez(tmp_path / "a.npz", poses=np.ones((2, 6)), name=np.str_("x"))
    arrays = read_npz(tmp_path / "a.npz")
    assert list(arrays) == ["poses", "name"] and arrays["poses"].shape == (2, 6)
    np.savez(tmp_path / "p.npz", obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"p.npz: key 'obj' holds a pickled object array, which poseprior"):
        read_npz(tmp_path / "p.npz")
    with pytest.raises(DataError, match="absent.npz' does not exist"):
        read_npz(tmp_path / "absent.npz")
    real = (sample_path() / "cmu_01_01.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(real[: len(real) // 2])
    with pytest.raises(DataError, match=r"cut.npz: cannot be read as an npz archive \(BadZipFile.*truncated"):
        read_npz(tmp_path / "cut.npz")
