"""The leave-one-group-out folds behind ``poseprior bench --loao`` and benchmarks/tune_defaults.py."""

from __future__ import annotations

from poseprior.amass import load_split
from poseprior.data import sample_path
from poseprior.evaluation import action_of, group_folds


def test_group_folds_hold_out_each_action_and_train_on_the_others() -> None:
    data = load_split(sample_path(), "train")
    folds = group_folds(data, min_frames=300)
    actions = {action_of(f) for f in data.files}
    small = {a for a in actions if len(data.select_files([f.rsplit("/", 1)[-1] for f in data.files
                                                           if action_of(f) == a])) < 300}
    assert set(folds) == actions - small and small  # the sample has a group under 300 frames
    for g, (rest, held) in folds.items():
        assert {action_of(f) for f in held.files} == {g}
        assert g not in {action_of(f) for f in rest.files}
        assert sorted(rest.files + held.files) == sorted(data.files)  # small groups stay in training
        assert len(rest) + len(held) == len(data)
