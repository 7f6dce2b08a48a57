"""Parity fixtures for the LivePortrait port, made by the original PyTorch modules.

    python tools/make_zoo_fixtures.py /work/shared/reference/upstream --out tests/fixtures/zoo

``UPSTREAM`` is a folder holding ``liveportrait/`` (KwaiVGI/LivePortrait's ``src/`` at the pinned commit; see its
README). Needs torch (CPU), numpy, pyyaml. For each network the script builds the upstream module at the reduced
widths of ``LivePortraitConfig.tiny()`` with ``torch.manual_seed``, puts it in eval mode, makes random weights
meaningful (BatchNorm running statistics randomised, ConvNeXt-V2 GRN gamma/beta moved off zero, spectral-norm
u/v power-iterated to convergence, as trained checkpoints store them), runs it on small random inputs, and writes

* ``liveportrait_<net>.safetensors``: the state dict in torch layout under ``sd.``, inputs under ``in.``,
  outputs under ``out.`` (NCHW, as torch returns them);
* ``liveportrait_chain.safetensors``: source image and driving motion → F volume, source keypoints, driving
  keypoints (``transform_keypoint``), stitched driving keypoints and the rendered frame (W then G), computed
  through upstream ``LivePortraitWrapper`` methods with the per-network fixtures' weights;
* ``liveportrait_<net>_keys.json``: ``{key: shape}`` of each network built at ``models.yaml`` sizes (random init;
  only the key list matters), for the full-size key-table tests.

Upstream modules are imported from the given folder; nothing of them is copied into vasajax.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
import yaml

from vasajax.params import write_safetensors
from vasajax.zoo.liveportrait.config import LivePortraitConfig

NETS = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")


def import_upstream(root: Path):
    """Upstream packages ``src.modules``, ``src.utils.camera`` and the wrapper (its unneeded imports stubbed)."""
    lp = root / "liveportrait"
    if not (lp / "src" / "modules" / "warping_network.py").is_file():
        sys.exit(f"error: {lp}/src/modules/warping_network.py not found; pass the upstream reference folder")
    sys.path.insert(0, str(lp))
    stubs = {
        "src.utils.timer": {"Timer": object},
        "src.utils.retargeting_utils": {"calc_eye_close_ratio": None, "calc_lip_close_ratio": None},
        "src.utils.rprint": {"rlog": print},
        "src.config.inference_config": {"InferenceConfig": object},
    }
    for name, attrs in stubs.items():
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
    import src.live_portrait_wrapper as wrapper  # noqa: PLC0415
    import src.modules.appearance_feature_extractor as afe  # noqa: PLC0415
    import src.modules.convnextv2 as convnextv2  # noqa: PLC0415
    import src.modules.motion_extractor as me  # noqa: PLC0415
    import src.modules.spade_generator as sg  # noqa: PLC0415
    import src.modules.stitching_retargeting_network as srn  # noqa: PLC0415
    import src.modules.warping_network as wn  # noqa: PLC0415

    models_yaml = yaml.safe_load((lp / "src" / "config" / "models.yaml").read_text())["model_params"]
    return types.SimpleNamespace(
        afe=afe, me=me, convnextv2=convnextv2, wn=wn, sg=sg, srn=srn, wrapper=wrapper, yaml=models_yaml
    )


# ------------------------------------------------------------------------------------------ building


def build(up, cfg: LivePortraitConfig, tiny: bool) -> dict[str, torch.nn.Module]:
    """Upstream networks at ``cfg``'s sizes (for ``tiny``: with the reductions models.yaml cannot express)."""
    a, m, w, g, r = cfg.appearance, cfg.motion, cfg.warping, cfg.generator, cfg.retargeting
    nets = {
        "appearance_feature_extractor": up.afe.AppearanceFeatureExtractor(
            a.image_channel,
            a.block_expansion,
            a.num_down_blocks,
            a.max_features,
            a.reshape_channel,
            a.reshape_depth,
            a.num_resblocks,
        ),
        "motion_extractor": up.me.MotionExtractor(num_kp=m.num_kp, backbone="convnextv2_tiny"),
        "warping_module": up.wn.WarpingNetwork(
            num_kp=w.num_kp,
            block_expansion=w.block_expansion,
            max_features=w.max_features,
            num_down_blocks=w.num_down_blocks,
            reshape_channel=w.reshape_channel,
            estimate_occlusion_map=w.estimate_occlusion_map,
            dense_motion_params=dataclasses.asdict(w.dense_motion),
        ),
        "spade_generator": up.sg.SPADEDecoder(
            upscale=g.upscale,
            max_features=g.max_features,
            block_expansion=g.block_expansion,
            out_channels=g.out_channels,
            num_down_blocks=g.num_down_blocks,
        ),
    }
    if tiny:
        # ConvNeXt-V2 "tiny" has fixed widths upstream: swap in the same class at our reduced depths/widths.
        nets["motion_extractor"].detector = up.convnextv2.ConvNeXtV2(
            depths=list(m.depths), dims=list(m.dims), num_kp=m.num_kp, num_bins=m.num_bins
        )
        # SPADE's hidden width is hard-coded (128): replace its three convs by narrower ones (same forward).
        for mod in nets["spade_generator"].modules():
            if isinstance(mod, up.sg.SPADEResnetBlock):
                for spade in (mod.norm_0, mod.norm_1, getattr(mod, "norm_s", None)):
                    if spade is None:
                        continue
                    label_nc = spade.mlp_shared[0].in_channels
                    norm_nc = spade.mlp_gamma.out_channels
                    spade.mlp_shared[0] = torch.nn.Conv2d(label_nc, g.spade_hidden, 3, padding=1)
                    spade.mlp_gamma = torch.nn.Conv2d(g.spade_hidden, norm_nc, 3, padding=1)
                    spade.mlp_beta = torch.nn.Conv2d(g.spade_hidden, norm_nc, 3, padding=1)
    for name in ("stitching", "lip", "eye"):
        mlp = getattr(r, name)
        nets[name] = up.srn.StitchingRetargetingNetwork(mlp.input_size, list(mlp.hidden_sizes), mlp.output_size)
    return nets


@torch.no_grad()
def make_meaningful(net: torch.nn.Module, gen: torch.Generator):
    """BatchNorm statistics and affine randomised, GRN off zero, spectral-norm u/v power-iterated to convergence."""
    for mod in net.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            c = mod.num_features
            mod.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
            mod.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            mod.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
            mod.bias.copy_(0.2 * torch.randn(c, generator=gen))
        if type(mod).__name__ == "GRN":
            mod.gamma.copy_(0.5 * torch.randn(mod.gamma.shape, generator=gen))
            mod.beta.copy_(0.2 * torch.randn(mod.beta.shape, generator=gen))
        if hasattr(mod, "weight_orig") and hasattr(mod, "weight_u"):
            w = mod.weight_orig.reshape(mod.weight_orig.shape[0], -1)
            u, v = mod.weight_u, mod.weight_v
            for _ in range(500):
                v = torch.nn.functional.normalize(w.t() @ u, dim=0, eps=1e-12)
                u = torch.nn.functional.normalize(w @ v, dim=0, eps=1e-12)
            mod.weight_u.copy_(u)
            mod.weight_v.copy_(v)


# ------------------------------------------------------------------------------------------ fixtures


def np_dict(prefix: str, d: dict) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v.detach().float().numpy().copy() for k, v in d.items() if v is not None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("upstream", type=Path, help="folder holding liveportrait/ (the upstream reference code)")
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/zoo"))
    args = ap.parse_args()
    up = import_upstream(args.upstream)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)

    # Full-size key lists (random init; only keys and shapes are written).
    torch.manual_seed(0)
    full = LivePortraitConfig.full()
    _check_full_matches_yaml(full, up.yaml)
    for name, net in build(up, full, tiny=False).items():
        if name in ("lip", "eye"):
            continue
        if name == "stitching":
            name = "stitching_retargeting_module"
            nets = build_retargeting_full(up, full)
            keys = {f"{prefix}.{k}": list(v.shape) for prefix, n in nets.items() for k, v in n.state_dict().items()}
        else:
            keys = {k: list(v.shape) for k, v in net.state_dict().items()}
        (args.out / f"liveportrait_{name}_keys.json").write_text(json.dumps(keys, indent=0, sort_keys=True) + "\n")
        del net

    # Tiny networks with meaningful random weights.
    cfg = LivePortraitConfig.tiny()
    torch.manual_seed(1234)
    gen = torch.Generator().manual_seed(4321)
    nets = build(up, cfg, tiny=True)
    for net in nets.values():
        net.eval()
        make_meaningful(net, gen)
    k = cfg.motion.num_kp
    s = cfg.image_size

    def rand(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=gen)

    image = torch.rand(2, 3, s, s, generator=gen)
    f = nets["appearance_feature_extractor"]
    write(args.out, "appearance_feature_extractor", f.state_dict(), {"image": image}, {"volume": f(image)})

    m = nets["motion_extractor"]
    write(args.out, "motion_extractor", m.state_dict(), {"image": image}, m(image))

    w = nets["warping_module"]
    a = cfg.appearance
    vol = rand(2, a.reshape_channel, a.reshape_depth, cfg.feature_size, cfg.feature_size)
    kp_s = 0.5 * (2 * torch.rand(2, k, 3, generator=gen) - 1)
    kp_d = kp_s + rand(2, k, 3, scale=0.1)
    out = w(vol, kp_driving=kp_d, kp_source=kp_s)
    write(args.out, "warping_module", w.state_dict(), {"volume": vol, "kp_source": kp_s, "kp_driving": kp_d}, out)

    g = nets["spade_generator"]
    feat = rand(2, cfg.generator.in_channels, cfg.feature_size, cfg.feature_size)
    write(args.out, "spade_generator", g.state_dict(), {"feature": feat}, {"image": g(feat)})

    # Retargeting: the file layout (three state dicts; DDP's "module." prefix, as upstream strips it).
    sd = {}
    for ours, theirs in (("stitching", "retarget_shoulder"), ("lip", "retarget_mouth"), ("eye", "retarget_eye")):
        sd.update({f"{theirs}.module.{kk}": vv for kk, vv in nets[ours].state_dict().items()})
    wr = wrapper_for(up, nets)
    eye_ratio = torch.rand(2, 3, generator=gen)
    lip_ratio = torch.rand(2, 2, generator=gen)
    write(
        args.out,
        "stitching_retargeting_module",
        sd,
        {"kp_source": kp_s, "kp_driving": kp_d, "eye_ratio": eye_ratio, "lip_ratio": lip_ratio},
        {
            "stitch_delta": wr.stitch(kp_s, kp_d),
            "stitched": wr.stitching(kp_s, kp_d),
            "eye_delta": wr.retarget_eye(kp_s, eye_ratio),
            "lip_delta": wr.retarget_lip(kp_s, lip_ratio),
        },
    )

    # Whole chain through the wrapper: source image + driving motion → frame.
    src = image[:1]
    vol_s = wr.extract_feature_3d(src)
    info = wr.get_kp_info(src)
    x_s = wr.transform_keypoint(info)
    drive = {
        "pitch": torch.tensor([[12.0]]),
        "yaw": torch.tensor([[-20.0]]),
        "roll": torch.tensor([[5.0]]),
        "exp": info["exp"] + rand(1, k, 3, scale=0.02),
        "t": info["t"] + rand(1, 3, scale=0.05),
        "scale": info["scale"] * 1.05,
    }
    x_d = wr.transform_keypoint({"kp": info["kp"], **drive})
    x_d_st = wr.stitching(x_s, x_d)
    frame = wr.warp_decode(vol_s, x_s, x_d_st)["out"]
    write(
        args.out,
        "chain",
        {},
        {"source": src, **drive},
        {
            "volume": vol_s,
            **{f"source_{kk}": vv for kk, vv in info.items()},
            "kp_source": x_s,
            "kp_driving": x_d,
            "kp_driving_stitched": x_d_st,
            "frame": frame,
        },
    )
    total = sum(p.stat().st_size for p in args.out.glob("liveportrait_*"))
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


def build_retargeting_full(up, cfg: LivePortraitConfig) -> dict[str, torch.nn.Module]:
    """The three MLPs at models.yaml sizes, keyed by the retargeting file's prefixes."""
    y = up.yaml["stitching_retargeting_module_params"]
    return {
        "retarget_shoulder": up.srn.StitchingRetargetingNetwork(**y["stitching"]),
        "retarget_mouth": up.srn.StitchingRetargetingNetwork(**y["lip"]),
        "retarget_eye": up.srn.StitchingRetargetingNetwork(**y["eye"]),
    }


def _check_full_matches_yaml(full: LivePortraitConfig, y: dict):
    """``LivePortraitConfig.full()`` must hold models.yaml's sizes."""
    a = y["appearance_feature_extractor_params"]
    assert dataclasses.asdict(full.appearance) == a, (dataclasses.asdict(full.appearance), a)
    assert full.motion.num_kp == y["motion_extractor_params"]["num_kp"]
    wy = dict(y["warping_module_params"])
    dm = wy.pop("dense_motion_params")
    assert dataclasses.asdict(full.warping.dense_motion) == dm
    for k, v in wy.items():
        assert getattr(full.warping, k) == v, k
    for k, v in y["spade_generator_params"].items():
        assert getattr(full.generator, k) == v, k
    for name, d in y["stitching_retargeting_module_params"].items():
        mlp = getattr(full.retargeting, name)
        assert (mlp.input_size, list(mlp.hidden_sizes), mlp.output_size) == (
            d["input_size"],
            d["hidden_sizes"],
            d["output_size"],
        ), name


def wrapper_for(up, nets):
    """An upstream ``LivePortraitWrapper`` around the given networks (no config file, CPU, float32)."""
    wr = up.wrapper.LivePortraitWrapper.__new__(up.wrapper.LivePortraitWrapper)
    wr.inference_cfg = types.SimpleNamespace(flag_use_half_precision=False)
    wr.device, wr.compile = "cpu", False
    wr.appearance_feature_extractor = nets["appearance_feature_extractor"]
    wr.motion_extractor = nets["motion_extractor"]
    wr.warping_module = nets["warping_module"]
    wr.spade_generator = nets["spade_generator"]
    wr.stitching_retargeting_module = {name: nets[name] for name in ("stitching", "lip", "eye")}
    return wr


def write(out: Path, name: str, sd: dict, inputs: dict, outputs: dict):
    tensors = {**np_dict("sd.", sd), **np_dict("in.", inputs), **np_dict("out.", outputs)}
    tensors = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
    write_safetensors(out / f"liveportrait_{name}.safetensors", tensors, {"source": "tools/make_zoo_fixtures.py"})


if __name__ == "__main__":
    main()
