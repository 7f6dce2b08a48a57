"""Parity fixtures for the JoyVASA port (``vasajax.zoo.joyvasa``) from upstream's own PyTorch modules.

    PYTHONPATH=src python tools/make_joyvasa_fixtures.py /work/shared/reference/upstream --out tests/fixtures/zoo

The argument is the folder that holds ``joyvasa/`` (jdh-algo/JoyVASA at 74290f6: ``src/modules/*``,
``src/utils/camera.py``); its modules are imported from there (never copied). Needs torch and transformers
(CPU). Writes:

* ``joyvasa_dit.safetensors``: a ``DitTalkingHead`` at reduced widths (motion 12, width 32, window 8 + 4,
  10 diffusion steps, 8 heads as upstream, 2 of its 8 layers) with a random-init 2-layer, 32-wide HuBERT as its audio
  encoder (``from_pretrained`` is patched to build it; ``audio_feature_map`` is rebuilt 32 → 32 to match) —
  its full state dict under ``sd.``, inputs under ``in.``, outputs under ``out.``: the denoiser for both
  positional-encoding forms, the audio front end (``extract_audio_feature``, with the mapped features'
  input captured by a hook), and the clip chain (``gen_motion_sequence``'s windowing around upstream's
  ``sample`` with CFG 2.8; x_T given, step noises recorded) for both forms, plus one window without CFG;
* ``joyvasa_template.safetensors``: random coefficients and template → keypoint parameters (R by upstream's
  ``get_rotation_matrix``; the normalisation and EMA written from ``live_portrait_wmg_wrapper.py`` and
  ``filter.py``, which do not import here);
* ``joyvasa_dit_keys.json``: every key and shape of a full-size ``DitTalkingHead`` (70 motion dims, width 512,
  100 + 25 frames, 50 steps, hubert-base encoder), random init: only names and shapes are kept.

It also checks ``vasajax.zoo.joyvasa.convert.read_pt`` on a small ``.pt`` laid out like a released one
(``args`` an ``argparse.Namespace`` holding a ``PosixPath``) and on one naming a global outside the allow-list.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import tempfile

import numpy as np

TINY_HUBERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
TINY = dict(motion_feat_dim=12, n_motions=8, n_prev_motions=4, feature_dim=32, n_diff_steps=10, audio_model="hubert")
FULL = dict(
    motion_feat_dim=70, n_motions=100, n_prev_motions=25, feature_dim=512, n_diff_steps=50, audio_model="hubert_zh"
)
CFG_SCALE = 2.8
TINY_LAYERS = 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("upstream", type=pathlib.Path, help="folder holding joyvasa/ (upstream reference code)")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/fixtures/zoo"))
    a = ap.parse_args()
    sys.path.insert(0, str(a.upstream / "joyvasa"))

    import torch
    import torch.nn.functional as F
    import transformers
    from src.modules import common, hubert
    from src.modules import dit_talking_head as dth
    from src.utils import camera

    from vasajax.params import write_safetensors

    torch.set_grad_enabled(False)
    # upstream builds its alignment mask with a hard-coded device='cuda' default; build it on the CPU instead
    dth.enc_dec_mask = lambda *args, **kw: common.enc_dec_mask(*args, **{**kw, "device": "cpu"})
    a.out.mkdir(parents=True, exist_ok=True)
    new_pe_forward = common.PositionalEncoding.forward

    def old_pe_forward(self, x):  # upstream before 74290f6: one row, pe[:, L]
        return self.dropout(x + self.pe[:, x.shape[1], :])

    forms = {"prefix": new_pe_forward, "constant": old_pe_forward}

    def build(kw, hubert_cfg):
        hubert.HubertModel.from_pretrained = classmethod(lambda cls, *_, **__: cls(hubert_cfg))
        return dth.DitTalkingHead(device="cpu", **kw)

    # ------------------------------------------------------------------ tiny model
    torch.manual_seed(0)
    model = build(TINY, transformers.HubertConfig(**TINY_HUBERT, attn_implementation="eager"))
    model.audio_feature_map = torch.nn.Linear(TINY_HUBERT["hidden_size"], TINY["feature_dim"])
    # 2 of upstream's 8 (identical) decoder layers keep the fixture and the port's compile small
    model.denoising_net.transformer.layers = model.denoising_net.transformer.layers[:TINY_LAYERS]
    for name, p in model.named_parameters():  # move zero biases and unit norms off their init
        if not name.startswith("audio_encoder.") and ("bias" in name or "norm" in name):
            p.add_(0.2 * torch.randn_like(p))
    model.eval()
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    B, L, K, M, D = 2, TINY["n_motions"], TINY["n_prev_motions"], TINY["motion_feat_dim"], TINY["feature_dim"]
    g = torch.Generator().manual_seed(1)
    ins = {
        "motion": torch.randn(B, L, M, generator=g),
        "audio_feat": torch.randn(B, L, D, generator=g),
        "prev_motion": torch.randn(B, K, M, generator=g),
        "prev_audio": torch.randn(B, K, D, generator=g),
        "step": torch.tensor([3, TINY["n_diff_steps"]]),
        "wave": 0.1 * torch.randn(B, L * 640, generator=g),
    }
    outs = {}
    for form, fwd in forms.items():
        common.PositionalEncoding.forward = fwd
        outs[f"denoise_{form}"] = model.denoising_net(
            ins["motion"], ins["audio_feat"], ins["prev_motion"], ins["prev_audio"], ins["step"]
        )
    common.PositionalEncoding.forward = new_pe_forward

    captured = {}
    hook = model.audio_feature_map.register_forward_hook(lambda m, i, o: captured.update(hidden=i[0]))
    outs["audio_feat"] = model.extract_audio_feature(ins["wave"])
    outs["audio_hidden"] = captured["hidden"]
    hook.remove()

    # the clip chain: gen_motion_sequence's windowing around upstream's sample (batch 1)
    fps, unit = 25, 16000 / 25
    wave = 0.1 * torch.randn(7000, generator=g)
    ins["chain_wave"] = wave
    ins["chain_xT"] = torch.randn(1, L, M, generator=g)
    real_randn_like = torch.randn_like

    for form, fwd in forms.items():
        common.PositionalEncoding.forward = fwd
        audio = F.pad(wave, (1280, 640), "constant", 0)
        clip_len = int(len(audio) / 16000 * fps)
        n_sub = 1 if clip_len <= L else math.ceil(clip_len / L)
        n_pad = round(unit * L) * n_sub - len(audio)
        n_pad_frames = math.ceil(n_pad / unit)
        if n_pad > 0:
            audio = F.pad(audio, (0, n_pad), value=0)
        coefs, prev_motion, prev_audio, noise = [], None, None, ins["chain_xT"]
        for i in range(n_sub):
            drawn = []
            torch.manual_seed(100 + i)
            torch.randn_like = lambda x, drawn=drawn, **kw: drawn.append(real_randn_like(x, **kw)) or drawn[-1]
            audio_in = audio[round(i * L * unit) : round((i + 1) * L * unit)].unsqueeze(0)
            motion, noise, feat = model.sample(
                audio_in,
                prev_motion,
                prev_audio,
                noise,
                cfg_mode="incremental",
                cfg_scale=CFG_SCALE,
                dynamic_threshold=0,
            )
            torch.randn_like = real_randn_like
            ins[f"chain_z_{form}_{i}"] = torch.stack(drawn)
            prev_motion, prev_audio = motion[:, -K:].clone(), feat[:, -K:]
            coefs.append(motion[:, :-n_pad_frames] if i == n_sub - 1 and n_pad_frames > 0 else motion)
        outs[f"chain_{form}"] = torch.cat(coefs, dim=1)[0]
    common.PositionalEncoding.forward = new_pe_forward

    drawn = []
    torch.manual_seed(7)
    torch.randn_like = lambda x, **kw: drawn.append(real_randn_like(x, **kw)) or drawn[-1]
    outs["nocfg_prefix"] = model.sample(ins["audio_feat"][:1], motion_at_T=ins["chain_xT"], cfg_cond=[])[0]
    torch.randn_like = real_randn_like
    ins["nocfg_z"] = torch.stack(drawn)

    tensors = {f"sd.{k}": v for k, v in sd.items()}
    tensors.update({f"in.{k}": v.numpy() for k, v in ins.items()})
    tensors.update({f"out.{k}": v.numpy() for k, v in outs.items()})
    meta = {
        "args": json.dumps({**TINY, "fps": 25, "pad_mode": "zero"}),
        "num_layers": str(TINY_LAYERS),
        "hubert_config": json.dumps(transformers.HubertConfig(**TINY_HUBERT, attn_implementation="eager").to_dict()),
        "cfg_scale": str(CFG_SCALE),
        "upstream": "jdh-algo/JoyVASA 74290f61accfbabef19b195a54b8122141f0e336",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    write_safetensors(a.out / "joyvasa_dit.safetensors", tensors, meta)

    # ------------------------------------------------------------------ template mapping
    rng = np.random.default_rng(3)
    T = 7
    coef = rng.uniform(0, 1, (T, 70)).astype(np.float32)
    tpl = {"mean_exp": rng.normal(0, 0.02, 63), "std_exp": rng.uniform(0.005, 0.05, 63)}
    for k, lo, hi in (("scale", 1.2, 1.8), ("t", -0.1, 0.1), ("pitch", -20, 20), ("yaw", -30, 30), ("roll", -15, 15)):
        n = 3 if k == "t" else 1
        tpl[f"min_{k}"] = rng.uniform(lo, (lo + hi) / 2, n)
        tpl[f"max_{k}"] = rng.uniform((lo + hi) / 2, hi, n)
    tpl = {k: v.astype(np.float32) for k, v in tpl.items()}
    ct = torch.from_numpy(coef)
    frames = []
    for idx in range(T):  # the per-frame loop of gen_motion_sequence

        def mm(cols, k, idx=idx):
            lo, hi = torch.from_numpy(tpl[f"min_{k}"]), torch.from_numpy(tpl[f"max_{k}"])
            return ct[idx][cols] * (hi - lo) + lo

        exp = ct[idx][:63] * torch.from_numpy(tpl["std_exp"]) + torch.from_numpy(tpl["mean_exp"])
        frames.append(
            dict(
                exp=exp,
                scale=mm(slice(63, 64), "scale"),
                t=mm(slice(64, 67), "t"),
                pitch=mm(slice(67, 68), "pitch"),
                yaw=mm(slice(68, 69), "yaw"),
                roll=mm(slice(69, 70), "roll"),
            )
        )
    raw = {k: torch.stack([f[k] for f in frames]).numpy() for k in frames[0]}
    pose = np.concatenate([raw[k] for k in ("scale", "t", "pitch", "yaw", "roll")], axis=1).astype(np.float32)
    smooth, s = [], None  # filter.py's ExponentialMovingAverageFilter(alpha=0.01)
    for v in pose:
        s = v if s is None else 0.01 * v + (1 - 0.01) * s
        smooth.append(s)
    smooth = np.asarray(smooth, np.float32)
    tt = {f"in.tpl.{k}": v for k, v in tpl.items()}
    tt["in.coef"] = coef
    for tag, p in (("raw", pose), ("smooth", smooth)):
        rot = camera.get_rotation_matrix(*(torch.from_numpy(p[:, i : i + 1]) for i in (4, 5, 6)))
        tt[f"out.{tag}.pose"] = p
        tt[f"out.{tag}.R"] = rot.numpy()
    tt["out.exp"] = raw["exp"].reshape(T, 21, 3)
    write_safetensors(a.out / "joyvasa_template.safetensors", tt, {"upstream": meta["upstream"]})

    # ------------------------------------------------------------------ full-size key list
    torch.manual_seed(0)
    full = build(
        FULL, transformers.HubertConfig(attn_implementation="eager")
    )  # hubert-base = chinese-hubert-base's architecture
    keys = {k: list(v.shape) for k, v in full.state_dict().items()}
    (a.out / "joyvasa_dit_keys.json").write_text(
        json.dumps({"args": {**FULL, "fps": 25, "pad_mode": "zero"}, "keys": keys}, indent=0) + "\n"
    )
    del full

    # ------------------------------------------------------------------ read_pt self-check
    from vasajax.errors import UserError
    from vasajax.zoo.joyvasa.convert import read_pt

    with tempfile.TemporaryDirectory() as tmp:
        ns = argparse.Namespace(**TINY, fps=25, pad_mode="zero", data_root=pathlib.PosixPath("data/"))
        torch.save({"args": ns, "model": model.state_dict(), "iter": 1}, f"{tmp}/ok.pt")
        state, args = read_pt(f"{tmp}/ok.pt")
        assert args["n_motions"] == TINY["n_motions"] and str(args["data_root"]) == "data"
        assert all(np.array_equal(state[k], sd[k].astype(state[k].dtype)) for k in sd)
        import fractions

        torch.save({"args": fractions.Fraction(1, 3), "model": {}}, f"{tmp}/bad.pt")
        try:
            read_pt(f"{tmp}/bad.pt")
            raise SystemExit("read_pt loaded a file with a global outside its allow-list")
        except UserError as e:
            print("read_pt refuses a foreign global:", str(e)[:150])
    print("read_pt reads a released-style .pt (Namespace + PosixPath): ok")
    for f in sorted(a.out.glob("joyvasa_*")):
        print(f"{f}: {f.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
