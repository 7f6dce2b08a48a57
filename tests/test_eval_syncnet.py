"""SyncNet port: parity with a random-init torch SyncNet in syncnet_python's layer layout, MFCC parity, scores."""

import numpy as np
import pytest
from flax import nnx

from vasajax.errors import UserError
from vasajax.eval import syncnet, syncnet_score
from vasajax.eval.mfcc import mfcc

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
nn = torch.nn


def _reference_s(embed: int = 1024):
    """syncnet_python's ``SyncNetModel.S`` layer layout, written out in plain torch (the reference)."""

    def block2d(i, o, k, p):
        return [nn.Conv2d(i, o, k, padding=p), nn.BatchNorm2d(o), nn.ReLU()]

    def block3d(i, o, k, s=(1, 1, 1), p=0):
        return [nn.Conv3d(i, o, k, stride=s, padding=p), nn.BatchNorm3d(o), nn.ReLU()]

    class S(nn.Module):
        def __init__(self):
            super().__init__()
            self.netcnnaud = nn.Sequential(
                *block2d(1, 64, 3, 1), nn.MaxPool2d(1, 1),
                *block2d(64, 192, 3, 1), nn.MaxPool2d(3, (1, 2)),
                *block2d(192, 384, 3, 1), *block2d(384, 256, 3, 1),
                *block2d(256, 256, 3, 1), nn.MaxPool2d(3, 2),
                *block2d(256, 512, (5, 4), 0),
            )  # fmt: skip
            self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed))
            self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed))
            self.netcnnlip = nn.Sequential(
                *block3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
                *block3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
                *block3d(256, 256, (1, 3, 3), p=(0, 1, 1)), *block3d(256, 256, (1, 3, 3), p=(0, 1, 1)),
                *block3d(256, 256, (1, 3, 3), p=(0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
                *block3d(256, 512, (1, 6, 6)),
            )  # fmt: skip

        def forward_aud(self, x):
            return self.netfcaud(self.netcnnaud(x).flatten(1))

        def forward_lip(self, x):
            return self.netfclip(self.netcnnlip(x).flatten(1))

    torch.manual_seed(0)
    s = S()
    with torch.no_grad():  # non-trivial BatchNorm statistics so the converter's BN mapping is exercised
        for m in s.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return s.eval()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref = _reference_s()
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(ref.state_dict(), path)
    return ref, syncnet.load_syncnet(path)


def test_parity_with_torch_reference(pair):
    ref, ours = pair
    rng = np.random.default_rng(0)
    lips = rng.uniform(0, 255, (2, 3, 5, 224, 224)).astype(np.float32)  # torch layout N×C×T×H×W
    aud = rng.normal(0, 5, (2, 1, 13, 20)).astype(np.float32)
    with torch.no_grad():
        want_l = ref.forward_lip(torch.from_numpy(lips)).numpy()
        want_a = ref.forward_aud(torch.from_numpy(aud)).numpy()
    graphdef, state = nnx.split(ours)
    got_l, got_a = syncnet_score._embed(graphdef, state, lips.transpose(0, 2, 3, 4, 1), aud.transpose(0, 2, 3, 1))
    for got, want in ((np.asarray(got_l), want_l), (np.asarray(got_a), want_a)):
        assert got.shape == (2, 1024)
        # measured (2-core CPU, JAX 0.10.2 vs torch 2.13): max |Δ| 1.3e-6 of a 1.37 maximum (lips), 1.2e-7 of 0.31
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_mfcc_matches_python_speech_features():
    import python_speech_features as psf  # the test extra installs it

    wave = np.random.default_rng(1).normal(0, 3000, 16_000 + 123)
    np.testing.assert_allclose(mfcc(wave), psf.mfcc(wave, 16_000), rtol=1e-6, atol=1e-6)


def test_sync_scores_find_the_shift():
    rng = np.random.default_rng(2)
    aud = rng.normal(size=(60, 16))
    lip = np.roll(aud, 3, axis=0) + 0.1 * rng.normal(size=aud.shape)  # lip frame v shows audio frame v − 3
    s = syncnet_score.sync_scores(lip, aud)
    assert s["sync_offset"] == 3
    assert s["sync_c"] > 1.0 and s["sync_d"] < 2.0


def test_bad_weights_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        syncnet.load_syncnet(tmp_path / "missing.model")
    torch.save({"netcnnaud.0.weight": torch.zeros(1)}, tmp_path / "partial.model")
    with pytest.raises(UserError, match="lack"):
        syncnet.load_syncnet(tmp_path / "partial.model")
