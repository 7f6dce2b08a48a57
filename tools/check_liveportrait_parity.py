"""Full-size parity of the LivePortrait port against the upstream PyTorch modules, stage by stage.

    PYTHONPATH=src python tools/check_liveportrait_parity.py /work/shared/reference/upstream \
        [--weights pretrained_weights/liveportrait] [--image face.png]

Without ``--weights`` both sides get the same random weights at ``models.yaml`` sizes (made meaningful as in
``make_zoo_fixtures.py``); with it, upstream loads the released ``.pth`` files as its ``load_model`` does and
vasajax converts them with ``load_liveportrait``. The source is a 256² crop (``--image``, resized) or random
pixels; the driving motion is the source's with a fixed pose change. Prints the relative error
(max |ours − theirs| / max |theirs|) of the volume, M's outputs, the keypoints and the frame, and the times.
Measured with random weights on a 2-core CPU: volume 6e-7, M ≤ 5e-6, keypoints ≤ 8e-7, frame 1.6e-5;
render 9.9 s per 512² frame (torch W+G: 13.4 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import make_zoo_fixtures as mzf  # noqa: E402

from vasajax.zoo.liveportrait import LivePortraitConfig, convert_state_dicts, jitted, load_liveportrait  # noqa: E402
from vasajax.zoo.liveportrait import keypoints as kpt  # noqa: E402


def rel(ours, theirs) -> float:
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return np.moveaxis(t.numpy(), 1, -1)


def upstream_nets(up, cfg, weights: Path | None, gen: torch.Generator) -> dict:
    nets = mzf.build(up, cfg, tiny=False)
    if weights is None:
        for n in nets.values():
            n.eval()
            mzf.make_meaningful(n, gen)
        return nets
    for name in mzf.NETS:
        nets[name].load_state_dict(torch.load(weights / f"base_models/{name}.pth", map_location="cpu"))
    ckpt = torch.load(weights / "retargeting_models/stitching_retargeting_module.pth", map_location="cpu")
    for ours, theirs in (("stitching", "retarget_shoulder"), ("lip", "retarget_mouth"), ("eye", "retarget_eye")):
        nets[ours].load_state_dict({k.replace("module.", ""): v for k, v in ckpt[theirs].items()})
    for n in nets.values():
        n.eval()
    return nets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("upstream", type=Path)
    ap.add_argument("--weights", type=Path, help="pretrained_weights/liveportrait (released .pth files)")
    ap.add_argument("--image", type=Path, help="source image (resized to 256²); random pixels if absent")
    args = ap.parse_args()
    up = mzf.import_upstream(args.upstream)
    torch.set_grad_enabled(False)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(8)
    cfg = LivePortraitConfig.full()
    nets = upstream_nets(up, cfg, args.weights, gen)
    wr = mzf.wrapper_for(up, nets)
    if args.image:
        from PIL import Image  # noqa: PLC0415

        img = np.asarray(Image.open(args.image).convert("RGB").resize((256, 256)), np.float32) / 255
        src = torch.from_numpy(img).permute(2, 0, 1)[None]
    else:
        src = torch.rand(1, 3, 256, 256, generator=gen)

    t0 = time.time()
    vol = wr.extract_feature_3d(src)
    info = wr.get_kp_info(src)
    x_s = wr.transform_keypoint(info)
    drive = {k: info[k] for k in ("exp", "t", "scale")}
    drive.update(pitch=info["pitch"] + 10, yaw=info["yaw"] - 15, roll=info["roll"] + 4)
    x_d = wr.stitching(x_s, wr.transform_keypoint({"kp": info["kp"], **drive}))
    t1 = time.time()
    frame = wr.warp_decode(vol, x_s, x_d)["out"]
    print(f"torch: F+M {t1 - t0:.1f} s, W+G {time.time() - t1:.1f} s")

    if args.weights:
        _, model = load_liveportrait(args.weights, cfg)
    else:
        sds = {n: {k: v.numpy() for k, v in nets[n].state_dict().items()} for n in mzf.NETS}
        sds["stitching_retargeting_module"] = {
            theirs: {k: v.numpy() for k, v in nets[ours].state_dict().items()}
            for ours, theirs in (("stitching", "retarget_shoulder"), ("lip", "retarget_mouth"), ("eye", "retarget_eye"))
        }
        model = convert_state_dicts(sds, cfg)
    params, fns = jitted(model)
    image = nhwc(src)
    v = fns.extract_appearance(params, image)
    print(f"volume {rel(v, nhwc(vol)):.1e}")
    i = fns.extract_motion(params, image)
    print("motion " + " ".join(f"{k} {rel(i[k], info[k].numpy()):.1e}" for k in i))
    xs = kpt.transform_keypoint(i["kp"], i["pitch"], i["yaw"], i["roll"], i["exp"], i["scale"], i["t"])
    d = {k: np.asarray(t) for k, t in drive.items()}
    xd = kpt.transform_keypoint(i["kp"], d["pitch"], d["yaw"], d["roll"], d["exp"], d["scale"], d["t"])
    xd = kpt.stitch(model.retargeting, xs, xd)
    print(f"kp_source {rel(xs, x_s.numpy()):.1e} kp_driving (stitched) {rel(xd, x_d.numpy()):.1e}")
    t0 = time.time()
    f = np.asarray(fns.render(params, v, xs, xd))
    t1 = time.time()
    f = np.asarray(fns.render(params, v, xs, xd))
    print(f"frame {rel(f, nhwc(frame)):.1e} (render: first call {t1 - t0:.1f} s, then {time.time() - t1:.1f} s)")


if __name__ == "__main__":
    main()
