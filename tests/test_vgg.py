"""VGG19 port: parity with a random-init torch VGG19 in torchvision's exact layout, converter and file errors."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from vasajax.errors import UserError  # noqa: E402
from vasajax.face import vgg  # noqa: E402

# torchvision.models.vgg19 ("E"): features indices 0..36; relu1_1=1, relu2_1=6, relu3_1=11, relu4_1=20, relu5_1=29.
_CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
_TAPS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}


class TorchVGG19(nn.Module):
    """torchvision's VGG19 module tree (``features`` with torchvision's indices; a small stand-in classifier)."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for v in _CFG_E:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(8, 4))  # keys we must ignore
        g = torch.Generator().manual_seed(0)
        for m in self.features:
            if isinstance(m, nn.Conv2d):  # torchvision's init (activations keep their scale) + non-zero biases
                fan_out = m.out_channels * 9
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_out) ** 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)

    def taps(self, x_nchw):
        out, x = {}, x_nchw
        for i, layer in enumerate(self.features[:30]):
            x = layer(x)
            for name, idx in _TAPS.items():
                if idx == i:
                    out[name] = x.clone()
        return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.manual_seed(0)
    ref = TorchVGG19().eval()
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(ref.state_dict(), path)
    images = np.random.default_rng(0).uniform(size=(2, 32, 48, 3)).astype(np.float32)
    mean, std = np.array(vgg.IMAGENET_MEAN, np.float32), np.array(vgg.IMAGENET_STD, np.float32)
    with torch.no_grad():
        x = torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy())
        feats = {k: v.numpy().transpose(0, 2, 3, 1) for k, v in ref.taps(x).items()}
    return ref, path, images, feats


def _assert_parity(model, images, feats):
    ours = model(images)
    assert set(ours) == set(vgg.FEATURE_LAYERS)
    for name in vgg.FEATURE_LAYERS:
        got, want = np.asarray(ours[name]), feats[name]
        assert got.shape == want.shape, name
        scale = float(np.abs(want).max())
        assert scale > 0.1, f"{name}: reference activations vanished; the parity check would be vacuous"
        err = float(np.abs(got - want).max())
        assert err <= 1e-4 * max(1.0, scale), f"{name}: max |diff| {err:.2e} (scale {scale:.2f})"


def test_converted_torchvision_vgg19_matches_reference_features(reference):
    _, path, images, feats = reference
    _assert_parity(vgg.load_torchvision(path), images, feats)


def test_safetensors_and_bare_features_state_dicts_load_the_same(reference, tmp_path):
    from safetensors.torch import save_file

    ref, _, images, feats = reference
    st = tmp_path / "vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(st))
    _assert_parity(vgg.load_torchvision(st), images, feats)
    from flax import nnx

    bare = vgg.convert({k: v.numpy() for k, v in ref.features.state_dict().items()})  # keys "0.weight", ...
    full = vgg.convert({k: v.numpy() for k, v in ref.state_dict().items()})
    for a, b in zip(jax.tree.leaves(nnx.state(bare)), jax.tree.leaves(nnx.state(full)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_table_covers_every_parameter_of_our_vgg():
    from flax import nnx

    from vasajax import params

    ours = params.param_shapes(lambda: vgg.VGG19(rngs=nnx.Rngs(0)))
    assert all(sum(r.match(name) is not None for r in vgg.TABLE) == 1 for name in ours)  # one rule each
    assert len(ours) == len(vgg.TABLE) == 2 * 13


def test_bad_weight_files_are_user_errors(reference, tmp_path):
    ref, _, _, _ = reference
    with pytest.raises(UserError, match="not found"):
        vgg.read_state_dict(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        vgg.read_state_dict(junk)
    tensor_file = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(UserError, match="not a state dict"):
        vgg.read_state_dict(tensor_file)
    sd = {k: v.numpy() for k, v in ref.state_dict().items() if k != "features.28.weight"}
    with pytest.raises(UserError, match="features.28.weight"):
        vgg.convert(sd)
    wrong = {k: v.numpy() for k, v in ref.state_dict().items()}
    wrong["features.0.bias"] = np.zeros(3, np.float32)
    with pytest.raises(UserError, match=r"features\.0\.bias.* shape"):
        vgg.convert(wrong)
    extra = {k: v.numpy() for k, v in ref.state_dict().items()}
    extra["features.40.weight"] = np.zeros(3, np.float32)
    with pytest.raises(UserError, match="does not read"):  # nothing is dropped silently
        vgg.convert(extra)
