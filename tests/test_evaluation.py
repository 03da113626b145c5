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


def test_one_markdown_writer_and_one_declaration_of_the_benchmark_rows() -> None:
    from poseprior import bench
    from poseprior.evaluation import Result, bench_specs, markdown, markdown_table

    assert markdown(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
    row = Result("gaussian", "body", 3, True, 1234, 0.5, 1.0, 2.0, 0.5, extra={"x": 12345.6})
    assert markdown_table([row], ("x",)).splitlines()[2] == (
        "| gaussian | body | 3 | exact | 1,234 | 0.5 | 1.00 | 2.00 | 0.500 | 12345.60 |"
    )
    assert bench._table([row], ("x", "y")) == "| prior | x | y |\n|---|---|---|\n| gaussian | 12,346 | - |"
    specs = bench_specs(["gaussian", "joint_flow"])
    assert specs == [("gaussian", {"covariance": "diagonal"}), ("gaussian", {}), ("joint_flow", {})]
    assert bench.default_specs(["gaussian", "joint_flow"]) == specs
    specs[0][1]["covariance"] = "full"  # the caller's copy; the declaration is unchanged
    assert bench_specs(["gaussian"])[0] == ("gaussian", {"covariance": "diagonal"})
