"""The VPoser v2 and SMPLify GMM importers, on files built here with the published layouts.

The files hold random numbers in the published key names, shapes and dtypes (VPoser v2: the state
dict of human_body_prior's ``VPoser`` inside its Lightning checkpoint; SMPLify: ``gmm_08.pkl``, a
dict of float64 arrays ``means`` (8, 69), ``covars`` (8, 69, 69), ``weights`` (8,)). The converted
priors are compared with a direct NumPy/SciPy computation from the same arrays.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import poseprior
from poseprior import CheckpointError
from poseprior.cli.main import main
from poseprior.importers import NumpyOnlyUnpickler, import_smplify_gmm, import_vposer, read_vposer_state

HIDDEN, LATENT = 48, 8


# ---------------------------------------------------------------------------- files in the published layouts
def _gmm_arrays(seed: int = 0, m: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, 69, 69)) * 0.03
    covars = a @ a.transpose(0, 2, 1) + 0.01 * np.eye(69)
    weights = rng.dirichlet(np.ones(m))
    return {"means": rng.normal(size=(m, 69)) * 0.3, "covars": covars, "weights": weights}


def _write_pickle(path: Path, obj: object, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _vposer_state(seed: int = 0, features: int = 63) -> dict[str, torch.Tensor]:
    """VPoser v2's state dict (human_body_prior vposer_model.VPoser), float32, with random values."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def linear(name: str, out: int, inp: int) -> None:
        sd[f"{name}.weight"] = torch.randn(out, inp, generator=g) / inp**0.5
        sd[f"{name}.bias"] = 0.1 * torch.randn(out, generator=g)

    def batchnorm(name: str, n: int) -> None:
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(n, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(n, generator=g)
        sd[f"{name}.running_mean"] = 0.2 * torch.randn(n, generator=g)
        sd[f"{name}.running_var"] = 0.05 + 0.2 * torch.rand(n, generator=g)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(1000)

    batchnorm("encoder_net.1", features)
    linear("encoder_net.2", HIDDEN, features)
    batchnorm("encoder_net.4", HIDDEN)
    linear("encoder_net.6", HIDDEN, HIDDEN)
    linear("encoder_net.7", HIDDEN, HIDDEN)
    linear("encoder_net.8.mu", LATENT, HIDDEN)
    linear("encoder_net.8.logvar", LATENT, HIDDEN)
    sd["encoder_net.8.logvar.weight"] *= 0.3  # posterior scales of the size a trained VPoser gives
    linear("decoder_net.0", HIDDEN, LATENT)
    linear("decoder_net.3", HIDDEN, HIDDEN)
    linear("decoder_net.5", 21 * 6, HIDDEN)
    return sd


def _vposer_ckpt(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """human_body_prior's Lightning checkpoint: the model under 'vp_model.', a body model, training state."""
    sd = {f"vp_model.{k}": v for k, v in state.items()}
    sd["bm_train.v_template"] = torch.zeros(10, 3)
    torch.save({"epoch": 13, "global_step": 100, "pytorch-lightning_version": "0.9.0", "state_dict": sd,
                "hparams": {"model_params": {"num_neurons": HIDDEN, "latentD": LATENT}},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}]}, path)
    return path


# ---------------------------------------------------------------------------- direct computations
def _vposer_decode(w: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """VPoser v2's decode(z)['pose_body'] from the arrays (eval mode)."""
    def lin(x: np.ndarray, n: str) -> np.ndarray:
        return x @ w[f"{n}.weight"].T + w[f"{n}.bias"]

    def lrelu(x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x, 0.01 * x)

    out = lin(lrelu(lin(lrelu(lin(z, "decoder_net.0")), "decoder_net.3")), "decoder_net.5").reshape(-1, 3, 2)
    b1 = out[:, :, 0] / np.linalg.norm(out[:, :, 0], axis=1, keepdims=True)
    b2 = out[:, :, 1] - (b1 * out[:, :, 1]).sum(1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=1, keepdims=True)
    matrices = np.stack([b1, b2, np.cross(b1, b2)], axis=-1)
    return Rotation.from_matrix(matrices).as_rotvec().reshape(len(z), 21, 3)


def _vposer_encode(w: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VPoser v2's encode(x): the mean and softplus scale of q(z|x), from the arrays (eval mode)."""
    def lin(x: np.ndarray, n: str) -> np.ndarray:
        return x @ w[f"{n}.weight"].T + w[f"{n}.bias"]

    def bn(x: np.ndarray, n: str) -> np.ndarray:
        sd = np.sqrt(w[f"{n}.running_var"] + 1e-5)
        return (x - w[f"{n}.running_mean"]) / sd * w[f"{n}.weight"] + w[f"{n}.bias"]

    h = lin(bn(x, "encoder_net.1"), "encoder_net.2")
    h = bn(np.where(h > 0, h, 0.01 * h), "encoder_net.4")
    h = lin(lin(h, "encoder_net.6"), "encoder_net.7")
    return lin(h, "encoder_net.8.mu"), np.logaddexp(0.0, lin(h, "encoder_net.8.logvar"))


# ---------------------------------------------------------------------------- SMPLify GMM
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_import_smplify_gmm_gives_the_marginal_mixture_density(tmp_path: Path, protocol: int) -> None:
    arrays = _gmm_arrays()
    src = _write_pickle(tmp_path / "gmm_08.pkl", arrays, protocol)
    assert main(["import-smplify-gmm", str(src), "--out", str(tmp_path / "gmm")]) == 0
    prior = poseprior.load(tmp_path / "gmm")
    assert prior.name == "gmm" and prior.dim == prior.model_dim == 63 and prior.n_components == 8
    assert prior.broad is None and (tmp_path / "gmm" / "README.md").is_file()
    x = 0.3 * np.random.default_rng(1).normal(size=(10, 63))
    # Directly: SMPLify's 69-d mixture with its last 6 values (SMPL's hand joints) integrated out.
    logs = [np.log(arrays["weights"][m]) + multivariate_normal(arrays["means"][m, :63],
            arrays["covars"][m, :63, :63]).logpdf(x) for m in range(8)]  # fmt: skip
    expected = logsumexp(np.stack(logs), axis=0)
    got = prior.double().log_prob(torch.from_numpy(x).reshape(10, 21, 3)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    # SMPLify's max-over-components energy, with our normalization constants.
    energy = prior.penalty(torch.from_numpy(x).reshape(10, 21, 3), kind="max_component").detach().numpy()
    np.testing.assert_allclose(energy, -np.max(np.stack(logs), axis=0), rtol=1e-5, atol=1e-3)


def test_the_gmm_unpickler_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    for obj in ({"means": Payload()}, Payload(), {**_gmm_arrays(), "extra": Payload()}):
        src = _write_pickle(tmp_path / "evil.pkl", obj)
        with pytest.raises(CheckpointError, match=r"the pickle refers to \S+; only NumPy arrays are read"):
            import_smplify_gmm(src)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        NumpyOnlyUnpickler(io.BytesIO(b"cbuiltins\neval\n(S'1'\ntR.")).load()
    # _codecs.encode is only allowed for the latin1 bytes of arrays.
    with pytest.raises(pickle.UnpicklingError, match="refused _codecs.encode"):
        NumpyOnlyUnpickler(io.BytesIO(b"c_codecs\nencode\n(Vx\nVrot13\ntR.")).load()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda a: {k: v for k, v in a.items() if k != "weights"},
         r"keys \['covars', 'means', 'weights'\], got"),
        (lambda a: {**a, "precisions": a["covars"]}, r"got \['covars', 'means', 'precisions', 'weights'\]"),
        (lambda a: {k: v[..., :63] if k == "means" else v for k, v in a.items()},
         r"means \(M, 69\).*means \(8, 63\)"),
        (lambda a: {**a, "means": a["means"].astype(np.int64)},
         "'means' must be a finite floating-point array"),
        (lambda a: {**a, "weights": a["weights"] * 2}, "weights must be positive and sum to 1"),
        (lambda a: {**a, "covars": -a["covars"]}, r"covariance\(s\) \[0, 1, .*not positive definite"),
        (lambda a: [a["means"]], "expected SMPLify's dict"),
    ],
)
def test_import_smplify_gmm_refuses_other_files(tmp_path: Path, edit: object, match: str) -> None:
    src = _write_pickle(tmp_path / "gmm.pkl", edit(_gmm_arrays()))  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=match):
        import_smplify_gmm(src)


def test_import_smplify_gmm_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not.pkl").write_bytes(b"PK\x03\x04 not a pickle")
    assert main(["import-smplify-gmm", str(tmp_path / "not.pkl"), "--out", str(tmp_path / "o")]) == 2
    assert "poseprior import-smplify-gmm: error:" in capsys.readouterr().err
    assert main(["import-smplify-gmm", str(tmp_path / "none.pkl"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- VPoser v2
def test_import_vposer_decodes_and_encodes_like_vposer(tmp_path: Path) -> None:
    state = _vposer_state()
    src = _vposer_ckpt(tmp_path / "V02_05_epoch=13_val_loss=0.03.ckpt", state)
    assert main(["import-vposer", str(src), "--out", str(tmp_path / "vae"), "--decoder-std", "0.2"]) == 0
    prior = poseprior.load(tmp_path / "vae")
    assert prior.name == "vae" and prior.latent_dim == LATENT and prior.hidden_features == HIDDEN
    assert prior.dim == prior.model_dim == 63 and prior.broad is None
    torch.testing.assert_close(prior._std(), torch.full((63,), 0.2))
    w = {k: v.double().numpy() for k, v in state.items()}
    z = np.random.default_rng(0).normal(size=(16, LATENT))
    with torch.no_grad():
        decoded = prior.decode(torch.from_numpy(z).float()).double().numpy()
        np.testing.assert_allclose(decoded, _vposer_decode(w, z), atol=2e-5)
        x = 0.3 * np.random.default_rng(1).normal(size=(16, 63))
        q = prior.encode(torch.from_numpy(x).float().reshape(16, 21, 3))
        loc, scale = _vposer_encode(w, x)
        np.testing.assert_allclose(q.loc.double().numpy(), loc, atol=2e-5)
        np.testing.assert_allclose(q.scale.double().numpy(), scale, atol=2e-5)
        assert torch.isfinite(prior.log_prob(torch.from_numpy(x).float().reshape(16, 21, 3))).all()


def test_import_vposer_reads_a_plain_state_dict(tmp_path: Path) -> None:
    state = _vposer_state(1)
    torch.save(state, tmp_path / "state.pt")
    prior = import_vposer(tmp_path / "state.pt")
    z = torch.randn(3, LATENT, generator=torch.Generator().manual_seed(0))
    expected = _vposer_decode({k: v.double().numpy() for k, v in state.items()}, z.double().numpy())
    np.testing.assert_allclose(prior.decode(z).detach().double().numpy(), expected, atol=2e-5)
    assert set(read_vposer_state(tmp_path / "state.pt")) == {k for k in state if "num_batches" not in k}


def test_import_vposer_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    torch.save({"state_dict": {f"vp_model.{k}": v for k, v in _vposer_state().items()}, "hparams": Payload()},
               tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors, which are never"):
        import_vposer(tmp_path / "evil.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: {k: v for k, v in s.items() if not k.startswith("decoder_net.5")},
         r"not a VPoser v2 checkpoint: missing \['decoder_net.5.bias', 'decoder_net.5.weight'\]"),
        (lambda s: {**s, "encoder_net.9.weight": torch.zeros(3)}, r"unexpected \['encoder_net.9.weight'\]"),
        (lambda s: {**s, "decoder_net.3.weight": torch.zeros(HIDDEN, HIDDEN + 1)},
         r"decoder_net.3.weight has shape \(48, 49\), expected \(48, 48\)"),
        (lambda s: {**s, "decoder_net.0.bias": torch.zeros(HIDDEN, dtype=torch.long)},
         "decoder_net.0.bias must be a finite floating-point tensor"),
        (lambda s: {"bodyprior_enc_fc1.weight": torch.zeros(3)}, "it looks like VPoser v1"),
        (lambda s: _vposer_state(features=66), "the encoder takes 66 values; VPoser v2 scores the 63 values"),
    ],
)
def test_import_vposer_refuses_other_files(tmp_path: Path, edit: object, match: str) -> None:
    torch.save(edit(_vposer_state()), tmp_path / "bad.pt")  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=match):
        import_vposer(tmp_path / "bad.pt")


def test_import_vposer_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _vposer_ckpt(tmp_path / "v.ckpt", _vposer_state())
    assert main(["import-vposer", str(src), "--out", str(tmp_path / "o"), "--decoder-std", "0"]) == 2
    assert "--decoder-std" in capsys.readouterr().err
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    assert main(["import-vposer", str(tmp_path / "junk.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a readable torch checkpoint" in capsys.readouterr().err
    with pytest.raises(ValueError, match="decoder_std must be finite and > min_std = 0.02, got 0.01"):
        import_vposer(src, decoder_std=0.01)
    assert not (tmp_path / "o").exists()


def test_both_priors_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  gmm " in out and "  vae " in out and "Gaussian mixture" in out and "VPoser-style" in out
