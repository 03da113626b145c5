"""Checkpoints through the hub API, offline: local folders and a stand-in for the network calls."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import poseprior
from poseprior import CheckpointError, UnknownPriorError
from poseprior.hub import from_pretrained, push_to_hub


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

    def fake_download(repo_id: str, revision: str | None, allow_patterns: list[str], cache_dir: str | None) -> str:
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


def test_checkpoints_from_before_the_broad_component_load_as_the_model_alone(tmp_path: Path) -> None:
    """poseprior 0.1.0 wrote no broad_weight: such a config means the model alone (w = 0),
    not today's default mixture, and its weights (without broad_* tensors) load strictly."""
    import json

    x = 0.3 * torch.randn(200, 15, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    prior = poseprior.create("gaussian", layout="left_hand", broad_weight=0.0).double().fit(x)
    folder = prior.save(tmp_path / "old")
    meta = json.loads((folder / "config.json").read_text())
    for key in ("broad_weight", "broad_scale"):
        del meta["config"][key]
    (folder / "config.json").write_text(json.dumps(meta))
    assert poseprior.prior_class("gaussian")().broad_weight > 0  # today's default is a mixture
    loaded = poseprior.load(folder)
    assert loaded.broad_weight == 0.0
    torch.testing.assert_close(loaded.log_prob(x[:5]), prior.log_prob(x[:5]))
