"""Audio front-end throughput: seconds of audio processed per second of wall time.

Measures (after one warm-up call each): decoding a 60 s stereo 44.1 kHz mp3 with ``media.read_audio``; log-mel
``frame_features`` on 60 s (``AudioConfig.small()``, 80 bins → 160-d per frame); wav2vec2-base (random init,
``Wav2Vec2Config.base()``, 95 M parameters) forward on one 20 s window (the default ``w2v_window_s``; the
audio path adds only a cheap resampling). Writes ``benchmarks/results/audio-<device>-<date>.json``.

    .venv/bin/python benchmarks/audio.py            # ~1-2 min on a 2-core CPU
    .venv/bin/python benchmarks/audio.py --quick    # shorter audio, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import soundfile
from flax import nnx

from vasajax import media
from vasajax.motion import audio, wav2vec2

SR = audio.SAMPLE_RATE


def _device() -> str:
    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"cpu{os.cpu_count()}"
    return d.device_kind.replace(" ", "_").lower()


def _best_of(fn, repeats: int) -> float:
    fn()  # warm-up (jit compile, librosa filterbank, page cache)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _speech_like(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Noise bursts with a moving pitch: not speech, but exercises every code path the same way."""
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    x = env * (0.1 * np.sin(2 * np.pi * (150 + 50 * np.sin(t)) * t) + 0.02 * rng.standard_normal(t.size))
    return x.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 s instead of 60 s, 5 s wav2vec2 window")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    device = _device()
    print(f"device: {device} ({jax.devices()[0]}, {platform.processor() or platform.machine()})")
    rng = np.random.default_rng(0)
    secs = 10.0 if args.quick else 60.0
    w2v_secs = 5.0 if args.quick else 20.0
    results: dict[str, object] = {"device": device, "jax": jax.__version__, "date": str(datetime.date.today())}

    with tempfile.TemporaryDirectory() as tmp:
        stereo = np.stack([_speech_like(secs, 44_100, rng)] * 2, 1)
        soundfile.write(f"{tmp}/a.wav", stereo, 44_100, subtype="FLOAT")
        media.run_ffmpeg("-i", f"{tmp}/a.wav", f"{tmp}/a.mp3", timeout_s=120)
        t = _best_of(lambda: media.read_audio(f"{tmp}/a.mp3"), args.repeats)
        results["load_mp3_audio_s_per_s"] = secs / t
        print(f"read_audio (stereo 44.1 kHz mp3 → 16 kHz mono): {secs / t:8.1f} s of audio per s")

    wave = _speech_like(secs, SR, rng)
    cfg = audio.AudioConfig.small()
    t = _best_of(lambda: audio.frame_features(wave, cfg), args.repeats)
    results["logmel_audio_s_per_s"] = secs / t
    print(f"log-mel frame_features ({cfg.n_mels} mels):            {secs / t:8.1f} s of audio per s")

    def streamed():
        stream = audio.LogMelStream(cfg)
        for chunk in np.array_split(wave, int(secs / 0.2)):  # 200 ms chunks, as a live stream would push
            stream.push(chunk)
        stream.finish()

    t = _best_of(streamed, args.repeats)
    results["logmel_stream_200ms_audio_s_per_s"] = secs / t
    print(f"log-mel LogMelStream, 200 ms chunks:             {secs / t:8.1f} s of audio per s")

    w_cfg = wav2vec2.Wav2Vec2Config.base()
    model = wav2vec2.Wav2Vec2(w_cfg, rngs=nnx.Rngs(0))
    forward, params = wav2vec2.make_forward(model)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    x = _speech_like(w2v_secs, SR, rng)[None]
    t_compile = time.perf_counter()
    jax.block_until_ready(forward(params, x))
    t_compile = time.perf_counter() - t_compile
    t = _best_of(lambda: jax.block_until_ready(forward(params, x)), args.repeats)
    results.update(
        wav2vec2_base_params=n_params,
        wav2vec2_base_window_s=w2v_secs,
        wav2vec2_base_first_call_s=t_compile,
        wav2vec2_base_audio_s_per_s=w2v_secs / t,
    )
    print(f"wav2vec2-base forward ({n_params / 1e6:.1f} M params, {w2v_secs:.0f} s window): "
          f"{w2v_secs / t:8.2f} s of audio per s (first call incl. compile {t_compile:.1f} s)")  # fmt: skip

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"audio-{device}-{datetime.date.today()}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
