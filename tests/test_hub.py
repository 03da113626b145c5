"""Checkpoints through the hub API, offline: local folders and a stand-in for the network calls."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import poseprior
from poseprior import CheckpointError, UnknownPriorError, hub
from poseprior.hub import checkpoint_record, from_pretrained, push_to_hub


def _prior() -> poseprior.PosePrior:
    x = 0.3 * torch.randn(200, 15, 3, generator=torch.Generator().manual_seed(0))
    return poseprior.create("gaussian", layout="left_hand").fit(x)


def test_from_pretrained_local_folder(tmp_path: Path) -> None:
    prior = _prior()
    prior.save(tmp_path / "ckpt")
    x = prior.sample(5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(from_pretrained(tmp_path / "ckpt").log_prob(x), prior.log_prob(x))


def test_hub_round_trip_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """push_to_hub uploads exactly the checkpoint files; from_pretrained downloads and loads them."""
    import huggingface_hub

    remote = tmp_path / "remote"
    calls: dict[str, object] = {}

    class FakeApi:
        def __init__(self, token: str | None = None) -> None:
            calls["token"] = token

        def create_repo(self, repo_id: str, private: bool, exist_ok: bool) -> None:
            calls["repo"] = repo_id

        def upload_folder(self, folder_path: str, repo_id: str, commit_message: str) -> str:
            import shutil

            shutil.copytree(folder_path, remote)
            return f"https://hub.example/{repo_id}/commit/abc"

    def fake_download(
        repo_id: str, revision: str | None, allow_patterns: list[str], cache_dir: str | None
    ) -> str:
        calls["download"] = (repo_id, revision, sorted(allow_patterns))
        return str(remote)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    prior = _prior()
    url = push_to_hub(prior, "someone/hand-prior", model_card="# card")
    assert url.endswith("/commit/abc") and calls["repo"] == "someone/hand-prior"
    assert sorted(p.name for p in remote.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = from_pretrained("someone/hand-prior", revision="0123abc")
    assert calls["download"] == ("someone/hand-prior", "0123abc", ["config.json", "model.safetensors"])
    x = prior.sample(4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(loaded.log_prob(x), prior.log_prob(x))


def test_from_pretrained_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a hub repo id"):
        from_pretrained(tmp_path / "missing")
    import huggingface_hub

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="could not fetch 'owner/name'.*offline mode"):
        from_pretrained("owner/name")


def test_pretrained_registry_errors() -> None:
    assert all("." in n for n in poseprior.list_pretrained())
    with pytest.raises(UnknownPriorError, match="no pretrained checkpoint 'nope.cmu'"):
        poseprior.load_pretrained("nope.cmu")


def _write(
    folder: Path, record: dict[str, Any], state: dict[str, torch.Tensor], metadata: dict | None = None
) -> Path:
    """A checkpoint folder written by hand, as anyone could: config.json, and weights whose metadata
    binds them to that record (format 2) unless ``metadata`` says otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(record))
    if metadata is None:
        metadata = {"prior": record["prior"], "format": "2", "poseprior": json.dumps(record, sort_keys=True)}
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"), metadata=metadata
    )
    return folder


def _format_1(folder: Path, prior: poseprior.PosePrior, drop: tuple[str, ...] = ()) -> Path:
    """A checkpoint as poseprior 0.1.0 wrote it (format 1, no binding), without the config keys ``drop``."""
    record = {**checkpoint_record(prior), "format": 1}
    record["config"] = {k: v for k, v in record["config"].items() if k not in drop}
    return _write(folder, record, prior.state_dict(), metadata={"prior": prior.name, "format": "1"})


def _same(a: poseprior.PosePrior, b: poseprior.PosePrior) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return (
        a.get_config() == b.get_config()
        and sa.keys() == sb.keys()
        and all(torch.equal(sa[k], sb[k]) for k in sa)
    )


# ---------------------------------------------------------------------------- one record, one place
def test_one_checkpoint_record_in_config_and_weights(tmp_path: Path) -> None:
    prior = _prior()
    folder = prior.save(tmp_path / "ckpt")
    record = checkpoint_record(prior)
    assert (
        record["format"] == hub.CHECKPOINT_FORMAT == 2
        and record["poseprior_version"] == poseprior.__version__
    )
    assert json.loads((folder / "config.json").read_text()) == record
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["poseprior"]) == record  # the weights are bound to their config


def _imports_of(module: str) -> list[tuple[str, bool]]:
    """The relative modules a poseprior module imports, and whether at run time (not under TYPE_CHECKING)."""
    tree = ast.parse((Path(poseprior.__file__).parent / f"{module}.py").read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    return [
        (node.module or "", id(node) not in typing_only)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
    ]


def test_checkpoint_io_is_in_hub_and_base_does_not_import_it_at_import_time() -> None:
    """The import circle base -> hub -> registry -> priors -> base is gone: hub never needs base at
    run time, and base imports hub only inside save/load."""
    assert [m for m, runtime in _imports_of("hub") if m == "base" and runtime] == []
    base_tree = ast.parse((Path(poseprior.__file__).parent / "base.py").read_text())
    top_level = [n.module for n in base_tree.body if isinstance(n, ast.ImportFrom)]
    assert "hub" not in top_level
    assert not any(hasattr(poseprior.base, k) for k in ("CHECKPOINT_FORMAT", "CONFIG_NAME", "WEIGHTS_NAME"))


def test_the_load_cap_has_one_default() -> None:
    import inspect

    for fn in (poseprior.load, poseprior.PosePrior.load, hub.load_checkpoint, hub.from_pretrained):
        assert inspect.signature(fn).parameters["max_parameters"].default == hub.MAX_PARAMETERS


# ---------------------------------------------------------------------------- formats
V1 = Path(__file__).parent / "data" / "v1"


@pytest.mark.parametrize("name", ["gaussian", "global_flow", "hand_vae", "joint_flow"])
def test_checkpoints_of_poseprior_0_1_0_load_with_the_same_density(name: str) -> None:
    """tests/data/v1 holds tiny checkpoints written by poseprior 0.1.0 (format 1, prior version 1,
    a constant value excluded, a broad component) and their log_prob on fixed poses: they load
    through the version upgrade and give the same numbers."""
    poses = torch.tensor(json.loads((V1 / "probe.json").read_text()), dtype=torch.float64)
    expected = torch.tensor(json.loads((V1 / "expected.json").read_text())[name], dtype=torch.float64)
    assert json.loads((V1 / name / "config.json").read_text())["prior_version"] == 1
    prior = poseprior.load(V1 / name)
    assert prior.excluded_names() == ["left_index1.z"] and prior.anatomical_names() == []
    torch.testing.assert_close(prior.log_prob(poses), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "tiny"),
    [("global_flow", {"blocks": 1, "hidden_features": 8}), ("joint_flow", {"hidden": 8, "layers": 1})],
)
def test_a_version_2_flow_loads_as_trained_without_limb_swaps(name: str, tiny: dict, tmp_path: Path) -> None:
    """Version 2 of the flows had no ``part_swap`` (they trained without limb swaps): their
    checkpoints load with ``part_swap=0``, not today's default, and the same density."""
    prior = poseprior.create(name, layout="left_hand", **tiny)
    x = 0.1 * torch.randn(50, 15, 3, generator=torch.Generator().manual_seed(0))
    prior.initialize(x)
    assert prior.part_swap > 0 and type(prior).version == 3
    record = {**checkpoint_record(prior), "prior_version": 2}
    record["config"] = {k: v for k, v in record["config"].items() if k != "part_swap"}
    loaded = poseprior.load(_write(tmp_path / "v2", record, prior.state_dict()))
    assert loaded.part_swap == 0.0
    torch.testing.assert_close(loaded.log_prob(x), prior.log_prob(x))
    record["prior_version"] = 4
    with pytest.raises(CheckpointError, match="of version 4; this poseprior reads versions 1 to 3"):
        poseprior.load(_write(tmp_path / "v4", record, prior.state_dict()))


@pytest.mark.parametrize("name", poseprior.list_pretrained())
def test_every_shipped_checkpoint_loads(name: str) -> None:
    """The shipped checkpoints were written in format 1 (no binding to check) or later: all load."""
    folder = hub._pretrained_folders()[name]
    assert json.loads((folder / "config.json").read_text())["format"] in hub.READABLE_FORMATS
    prior = poseprior.load(folder)
    x = prior.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(prior.log_prob(x)).all()


def test_a_format_1_folder_with_another_priors_weights_is_refused(tmp_path: Path) -> None:
    prior = _prior()
    folder = _format_1(tmp_path / "old", prior)
    save_file(
        prior.state_dict(), str(folder / "model.safetensors"), metadata={"prior": "joint_flow", "format": "1"}
    )
    with pytest.raises(CheckpointError, match="does not belong to"):
        poseprior.load(folder)


def test_custom_layouts_round_trip(tmp_path: Path) -> None:
    hand = poseprior.get_layout("left_hand")
    layout = poseprior.JointLayout("my_hand", hand.joints, hand.parents)
    prior = poseprior.create("gaussian", layout=layout).fit(0.3 * torch.randn(100, 15, 3))
    loaded = poseprior.load(prior.save(tmp_path / "ckpt"))
    assert loaded.layout == layout and _same(loaded, prior)


# ---------------------------------------------------------------------------- config <-> weights binding
def test_a_folder_mixing_two_saves_is_refused(tmp_path: Path) -> None:
    """The config of one save with the weights of another (same architecture) loaded silently before."""
    a = _prior()
    b = poseprior.create("gaussian", layout="left_hand", broad_weight=0.1).fit(torch.randn(200, 15, 3))
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    (tmp_path / "a" / "config.json").write_bytes((tmp_path / "b" / "config.json").read_bytes())
    with pytest.raises(
        CheckpointError, match=r"config\.json' does not belong to .*model\.safetensors'.*config\.broad_weight"
    ):
        poseprior.load(tmp_path / "a")


def test_weights_without_a_record_do_not_go_with_a_format_2_config(tmp_path: Path) -> None:
    prior = _prior()
    folder = prior.save(tmp_path / "ckpt")
    save_file(prior.state_dict(), str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="the weights carry no poseprior record"):
        poseprior.load(folder)


# ---------------------------------------------------------------------------- what save replaces
def test_save_refuses_a_folder_of_other_files_and_leaves_them(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(
        CheckpointError, match=r"cannot save to .*mine'.*\['notes\.txt'\].*new or empty folder"
    ):
        _prior().save(tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="exists and is not a folder"):
        _prior().save(tmp_path / "file")
    (tmp_path / "card_only").mkdir()
    (tmp_path / "card_only" / "README.md").write_text("my notes")
    with pytest.raises(CheckpointError, match="no readable poseprior config.json"):
        _prior().save(tmp_path / "card_only")


def test_save_replaces_the_whole_checkpoint_and_writes_the_model_card(tmp_path: Path) -> None:
    prior = _prior()
    folder = prior.save(tmp_path / "ckpt")
    (folder / "README.md").write_text("the model card of an earlier prior")  # as train_cmu.py writes it
    prior.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # no stale card
    prior.save(folder, model_card="# this prior\n")
    assert (folder / "README.md").read_text() == "# this prior\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folder left
    with pytest.raises(TypeError, match="model_card must be the text of README.md"):
        prior.save(folder, model_card=Path("README.md"))


def test_save_removes_what_a_killed_save_left(tmp_path: Path) -> None:
    stale = tmp_path / ".ckpt.poseprior-tmp-0123456789ab"
    stale.mkdir()
    (stale / "config.json").write_text("{")
    other = tmp_path / ".other.poseprior-tmp-0123456789ab"  # another folder's: not this save's business
    other.mkdir()
    _prior().save(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "ckpt"]


def test_save_without_an_atomic_exchange_still_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where renameat2 is unavailable, the documented fallback (two renames) gives the same result."""
    from poseprior import _atomicdir

    monkeypatch.setattr(_atomicdir, "_exchange", lambda a, b: False)
    a, b = _prior(), poseprior.create("gaussian", layout="left_hand").fit(torch.randn(50, 15, 3))
    a.save(tmp_path / "ckpt", model_card="a")
    b.save(tmp_path / "ckpt")
    assert _same(poseprior.load(tmp_path / "ckpt"), b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]


def test_save_keeps_the_folder_permissions(tmp_path: Path) -> None:
    folder = _prior().save(tmp_path / "ckpt")
    folder.chmod(0o750)
    _prior().save(folder)
    assert folder.stat().st_mode & 0o777 == 0o750



def test_a_load_racing_a_save_reads_the_new_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that swaps the folder (and deletes the old copy) between the reader's two files: the
    reader, holding the old folder, finds its weights gone and reads the new folder instead."""
    a, b = _prior(), poseprior.create("gaussian", layout="left_hand").fit(torch.randn(50, 15, 3))
    folder = a.save(tmp_path / "ckpt")
    read = hub._read
    raced: list[str] = []

    def read_during_a_save(path: Path, dir_fd: int | None, limit: int | None) -> bytes | None:
        if path.name == "model.safetensors" and not raced:
            raced.append(path.name)
            b.save(folder)
        return read(path, dir_fd, limit)

    monkeypatch.setattr(hub, "_read", read_during_a_save)
    assert _same(poseprior.load(folder), b) and raced

# ---------------------------------------------------------------------------- validation before building
def _flow_record(**config: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    prior = poseprior.create("global_flow", layout="left_hand", blocks=1, hidden_features=8)
    record = checkpoint_record(prior)
    record["config"].update(config)
    return record, prior.state_dict()


class _RefuseLargeTensors(TorchDispatchMode):
    """Fails the test the moment an op would create a tensor of more than ``limit`` values on a real
    device; factories are sized on the meta device first, so the refused tensor is never allocated."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def _check(self, out: object, func: object) -> None:
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta" and t.numel() > self.limit:
                raise AssertionError(f"{func} allocated a tensor of {t.numel():,} values")

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if not any(isinstance(a, torch.Tensor) for a in tree_leaves((args, kwargs))):
            try:
                self._check(func(*args, **{**kwargs, "device": torch.device("meta")}), func)
            except (TypeError, RuntimeError, NotImplementedError):
                pass  # not a sizeable factory: checked after it runs
        out = func(*args, **kwargs)
        self._check(out, func)
        return out


def test_an_oversized_config_is_refused_without_allocating(tmp_path: Path) -> None:
    """hidden_features: 20000 reached 5 GB before failing; now it is refused before any large tensor."""
    folder = _write(tmp_path / "big", *_flow_record(hidden_features=20000))
    with _RefuseLargeTensors(limit=1_000_000):
        with pytest.raises(
            CheckpointError,
            match=r"config\.json'.*more than 50,000,000 tensor values.*hidden_features"
            r".*max_parameters=None",
        ):
            poseprior.load(folder)


def test_the_cap_and_its_opt_out(tmp_path: Path) -> None:
    prior = _prior()
    folder = prior.save(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="max_parameters"):
        poseprior.load(folder, max_parameters=100)
    assert _same(poseprior.load(folder, max_parameters=None), prior)
    assert _same(type(prior).load(folder, max_parameters=10_000), prior)
    (folder / "model.safetensors").write_bytes(b"\0" * (2 << 20))  # read only if the cap allows its size
    with pytest.raises(CheckpointError, match=r"model\.safetensors' is 2,097,152 bytes.*max_parameters=None"):
        poseprior.load(folder, max_parameters=1000)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("min_std", "0.02", "a number"),
        ("min_std", "0.02", "a number"),  # float("0.02") was accepted silently
        ("covariance", "diag", 'one of "full", "diagonal"'),
        ("anatomical", [1.5], "a list of integers or null"),
        ("broad_weight", True, "a number"),
        ("layout", 3, "a string or a layout"),
        ("layout", {"name": "x", "joints": ["a"]}, "a string or a layout"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused(
    tmp_path: Path, field: str, value: object, expected: str
) -> None:
    prior = _prior()
    record = checkpoint_record(prior)
    record["config"][field] = value
    folder = _write(tmp_path / "ckpt", record, prior.state_dict())
    with pytest.raises(CheckpointError, match=rf"config\.json': config field '{field}' must be {expected}"):
        poseprior.load(folder)


def test_config_fields_that_are_not_parameters_are_refused_by_name(tmp_path: Path) -> None:
    prior = _prior()
    record = checkpoint_record(prior)
    record["config"]["hidden"] = 64
    with pytest.raises(
        CheckpointError, match=r"config\.json': config field\(s\) \['hidden'\] are not parameters of "
    ):
        poseprior.load(_write(tmp_path / "ckpt", record, prior.state_dict()))


def test_constructor_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    prior = _prior()
    record = checkpoint_record(prior)
    record["config"]["broad_weight"] = 1.5
    with pytest.raises(
        CheckpointError,
        match=r"config\.json': config field 'broad_weight' does not build a GaussianPrior: "
        r"broad_weight must be in \[0, 1\), got 1.5",
    ):
        poseprior.load(_write(tmp_path / "ckpt", record, prior.state_dict()))


def test_non_finite_numbers_in_config_json_are_refused(tmp_path: Path) -> None:
    prior = _prior()
    folder = prior.save(tmp_path / "ckpt")
    text = (folder / "config.json").read_text()
    edited = re.sub(r'"min_std": [0-9.e+-]+', '"min_std": NaN', text)
    assert edited != text
    (folder / "config.json").write_text(edited)
    with pytest.raises(CheckpointError, match=r"config\.json' holds NaN, which is not a JSON number"):
        poseprior.load(folder)


@pytest.mark.parametrize("fault", ["nan", "inf", "int32"])
def test_weights_must_be_finite_and_floating(tmp_path: Path, fault: str) -> None:
    prior = _prior()
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    if fault == "int32":
        state["loc"] = state["loc"].round().to(torch.int32)
    else:
        state["loc"][3] = math.nan if fault == "nan" else math.inf
    folder = _write(tmp_path / "ckpt", checkpoint_record(prior), state)
    match = (
        "is stored as torch.int32, but a GaussianPrior holds it as a floating dtype"
        if fault == "int32"
        else ("holds 1 non-finite value")
    )
    with pytest.raises(CheckpointError, match=rf"model\.safetensors': tensor 'loc' {match}"):
        poseprior.load(folder)
