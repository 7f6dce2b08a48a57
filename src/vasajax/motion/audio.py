"""Audio front end: turn 16 kHz mono waves into per-video-frame features (no media decoding here).

Files are decoded by ``vasajax.media`` (``read_audio`` / ``iter_audio``); this module only computes.

VASA-1 §3.2 conditions the motion diffusion transformer on "synchronized audio features A = {f_audio^i}", one
per motion frame, from a pretrained Wav2Vec2. We offer that (``kind="wav2vec2"``, a local Hugging Face
checkpoint through ``vasajax.motion.wav2vec2``) and, as the default that needs no weights, log-mel features
(``kind="logmel"``). Either way ``frame_features(wave_16k, cfg)`` returns ``T×A``: two 50 Hz feature vectors
per 25 fps video frame, concatenated (``A = 2·n_mels`` or ``2·hidden_size``).

Alignment convention (exact, integer arithmetic on absolute sample indices, so nothing drifts):
video frame ``i`` shows audio time ``[i/fps, (i+1)/fps)``. Its two halves have centres ``(i+¼)/fps`` and
``(i+¾)/fps``; feature slot ``k ∈ {2i, 2i+1}`` (``k = 2i + h``) is centred on sample
``c_k = ⌊sr·(2k+1) / (4·fps)⌋``. At 16 kHz and 25 fps a frame is 640 samples and ``c_{2i} = 640i + 160``,
``c_{2i+1} = 640i + 480``. Log-mel slot ``k`` is the power spectrum of a 400-sample (25 ms) periodic Hann
window centred on ``c_k``, i.e. samples ``[c_k − 200, c_k + 200)`` (``[640i−40, 640i+360)`` and
``[640i+280, 640i+680)`` at 25 fps: each frame peeks 2.5 ms into its neighbours). Samples before 0 or past the
end count as zeros. ``features[i] = concat(slot[2i], slot[2i+1])``. For wav2vec2, whose 50 Hz output ``j``
covers ``[320j, 320j+400)``, the input is shifted by 40 samples so that output ``j`` is centred on
``320j + 160``, which equals ``c_j`` at 25 fps; other frame rates linearly interpolate to the ``c_k`` times.

``num_video_frames(n)`` = ``⌈n·fps/sr⌉``: every frame that shows any audio, the last one possibly partial.

Log-mel features depend only on samples within 200 of their centre, so ``LogMelStream`` (push chunks, get
the frames whose samples are complete) gives the same features as the whole clip; wav2vec2 attends over its
whole window and is not streaming-exact (long audio runs in overlapping windows, see ``AudioConfig``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from vasajax.errors import UserError

SAMPLE_RATE = 16_000
"""The sample rate (Hz) of every waveform in vasajax."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AudioConfig:
    """How audio becomes per-video-frame features (``frame_features``)."""

    kind: str = "logmel"
    """"logmel" (default, no weights) or "wav2vec2" (needs ``checkpoint``; VASA-1's choice)."""
    fps: float = 25
    """Video frame rate; two feature slots per frame. Exact for any rational rate (29.97 → 2997/100)."""
    sample_rate: int = SAMPLE_RATE
    """Waveform rate (Hz) the features expect; ``vasajax.media.read_audio`` resamples to it."""
    n_mels: int = 80
    """Mel bins per slot (log-mel); the feature dim is ``2·n_mels``."""
    n_fft: int = 512
    """FFT size of the log-mel STFT (samples; ≥ ``win_length``)."""
    win_length: int = 400
    """Hann window length in samples (400 = 25 ms), centred on each slot's centre sample."""
    fmin: float = 0.0
    """Lowest mel filter edge (Hz)."""
    fmax: float | None = None
    """Highest mel filter edge (Hz); None = sample_rate / 2."""
    log_floor: float = 1e-5
    """Mel power is clamped below at this before the natural log (silence → log(1e-5) ≈ −11.5)."""
    norm_mean: float = -7.0
    """Fixed normalisation: ``(log_mel − norm_mean) / norm_std`` (per-bin statistics: ``FeatureStats``)."""
    norm_std: float = 4.0
    """See ``norm_mean``. Defaults: espeak-ng speech at RMS 0.1 → mean ≈ −0.15, std ≈ 1; silence → −1.13."""
    block_frames: int = 10
    """Log-mel runs in blocks of this many video frames: bounded memory, and blocks this small stay in cache
    and keep BLAS single-threaded (2.5× faster than 10 s blocks on a busy 2-core CPU)."""
    checkpoint: str | None = None
    """wav2vec2: directory with a Hugging Face ``config.json`` + ``model.safetensors`` (never downloaded)."""
    w2v_layer: int = -1
    """wav2vec2: which output: −1 = last hidden state, 0..L = ``hidden_states[i]`` (0 = transformer input)."""
    w2v_normalize: bool | None = None
    """wav2vec2: zero-mean/unit-variance input per window as HF's feature extractor does; None = read
    ``do_normalize`` from the checkpoint's ``preprocessor_config.json`` (True if absent)."""
    w2v_window_s: float = 20.0
    """wav2vec2: audio longer than this runs in windows of this length (one jit shape), bounded memory."""
    w2v_context_s: float = 1.0
    """wav2vec2: extra audio each side of a window that the model sees but whose outputs are discarded."""

    def __post_init__(self):
        if self.kind not in ("logmel", "wav2vec2"):
            raise UserError(f"audio config: kind must be 'logmel' or 'wav2vec2', got {self.kind!r}")
        if not self.fps > 0 or not self.sample_rate > 0:
            raise UserError("audio config: fps and sample_rate must be positive")
        if self.win_length > self.n_fft:
            raise UserError("audio config: win_length must not exceed n_fft")

    @property
    def fps_fraction(self) -> Fraction:
        """``fps`` as an exact fraction (floats via their shortest decimal, e.g. 29.97 → 2997/100)."""
        return Fraction(str(self.fps)) if isinstance(self.fps, float) else Fraction(self.fps)

    @classmethod
    def tiny(cls) -> AudioConfig:
        """Tests and smoke runs: 16 mel bins (A = 32)."""
        return cls(n_mels=16)

    @classmethod
    def small(cls) -> AudioConfig:
        """The shipped demo: 80-bin log-mel (A = 160); needs no weights."""
        return cls()

    @classmethod
    def paper(cls, checkpoint: str | None = None) -> AudioConfig:
        """VASA-1: wav2vec2 features (A = 2·hidden, 1536 for base); ``checkpoint`` must be set to extract."""
        return cls(kind="wav2vec2", checkpoint=checkpoint)


# ------------------------------------------------------------------------------------------- alignment


def num_video_frames(num_samples: int, fps: float = 25, sample_rate: int = SAMPLE_RATE) -> int:
    """Video frames covering ``num_samples`` of audio: ``⌈num_samples·fps/sample_rate⌉`` (exact; 0 → 0).

    A trailing partial frame counts (its missing audio is treated as silence).
    """
    f = Fraction(str(fps)) if isinstance(fps, float) else Fraction(fps)
    return math.ceil(Fraction(num_samples) * f / sample_rate)


def slot_centers(first_slot: int, num_slots: int, cfg: AudioConfig) -> np.ndarray:
    """Centre sample ``c_k = ⌊sr·(2k+1)/(4·fps)⌋`` of slots ``k = first_slot … first_slot+num_slots−1``
    (slot ``2i + h`` is half ``h`` of video frame ``i``), as int64, exact for any length."""
    f = cfg.fps_fraction
    k = np.arange(first_slot, first_slot + num_slots, dtype=np.int64)
    return (cfg.sample_rate * (2 * k + 1) * f.denominator) // (4 * f.numerator)


# -------------------------------------------------------------------------------------------- log-mel


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (the Auditory Toolbox's; librosa's default, ``htk=False``): linear below 1 kHz
    (3 mels per 200 Hz), logarithmic above (27 steps per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    lin = hz / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, lin)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of ``hz_to_mel``."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3.0))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None):
    """``n_mels × (n_fft//2 + 1)`` float32 triangular filters, equally spaced on the Slaney mel scale between
    ``fmin`` and ``fmax`` (default Nyquist), each scaled to unit area in Hz (Slaney normalisation: 2/bandwidth).

    The weights librosa's ``filters.mel`` gives with its defaults (tests/test_audio.py compares them), computed
    here so the feature path needs no audio library."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    width = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    weights = np.zeros((n_mels, len(fft_hz)), dtype=np.float32)
    for i in range(n_mels):
        rising, falling = -ramps[i] / width[i], ramps[i + 2] / width[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights


@functools.lru_cache(maxsize=8)
def _mel_tables(sample_rate: int, n_fft: int, win_length: int, n_mels: int, fmin: float, fmax: float | None):
    mel_FxM = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).T
    window = np.zeros(n_fft)
    lo = (n_fft - win_length) // 2
    window[lo : lo + win_length] = np.hanning(win_length + 1)[:-1]  # periodic Hann, centred in the FFT
    return mel_FxM.astype(np.float64), window


def _logmel_slots(buf: np.ndarray, buf_start: int, first_slot: int, num_slots: int, cfg: AudioConfig):
    """Normalised log-mel of slots ``[first_slot, first_slot+num_slots)`` from ``buf``, whose element 0 is
    absolute sample ``buf_start``; samples outside ``buf`` are zeros. Returns ``num_slots×n_mels`` float32."""
    mel_FxM, window = _mel_tables(cfg.sample_rate, cfg.n_fft, cfg.win_length, cfg.n_mels, cfg.fmin, cfg.fmax)
    half = cfg.n_fft // 2
    centers = slot_centers(first_slot, num_slots, cfg)
    lo, hi = int(centers[0]) - half, int(centers[-1]) + half
    local = np.zeros(hi - lo, dtype=np.float64)
    a, b = max(lo, buf_start), min(hi, buf_start + len(buf))
    if b > a:
        local[a - lo : b - lo] = buf[a - buf_start : b - buf_start]
    idx = (centers - half - lo)[:, None] + np.arange(cfg.n_fft)[None, :]
    spec = np.fft.rfft(local[idx] * window, axis=-1)
    power_SxF = spec.real**2 + spec.imag**2
    logmel = np.log(np.maximum(power_SxF @ mel_FxM, cfg.log_floor))
    return ((logmel - cfg.norm_mean) / cfg.norm_std).astype(np.float32)


def logmel_features(wave_16k: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """``T×2·n_mels`` normalised log-mel for the whole wave (``T = num_video_frames``), in blocks."""
    wave = np.asarray(wave_16k, dtype=np.float32).reshape(-1)
    T = num_video_frames(wave.size, cfg.fps, cfg.sample_rate)
    out = np.zeros((T, 2 * cfg.n_mels), np.float32)
    for i in range(0, T, cfg.block_frames):
        n = min(cfg.block_frames, T - i)
        out[i : i + n] = _logmel_slots(wave, 0, 2 * i, 2 * n, cfg).reshape(n, 2 * cfg.n_mels)
    return out


def first_sample_needed(frame: int, cfg: AudioConfig) -> int:
    """First absolute sample that log-mel frame ``frame`` reads (``c_2i − n_fft/2``; may be negative)."""
    return int(slot_centers(2 * frame, 1, cfg)[0]) - cfg.n_fft // 2


class LogMelStream:
    """Incremental log-mel: ``push(chunk)`` returns the frames whose audio is complete, ``finish()`` the rest.

    The concatenated outputs equal ``frame_features(whole_wave, cfg)`` for any chunking. Memory is bounded by
    the chunk size plus one window.
    """

    def __init__(self, cfg: AudioConfig, *, start_frame: int = 0):
        """``start_frame > 0`` resumes mid-clip: the first pushed sample is then absolute sample
        ``first_sample_needed(start_frame, cfg)`` and the first output row is frame ``start_frame``."""
        if cfg.kind != "logmel":
            raise UserError("LogMelStream needs an AudioConfig with kind='logmel'")
        self.cfg = cfg
        self.buf = np.zeros(0, np.float32)
        self.buf_start = first_sample_needed(start_frame, cfg) if start_frame else 0  # absolute index of buf[0]
        self.next_frame = start_frame
        self.finished = False

    @property
    def num_samples(self) -> int:
        """Samples pushed so far."""
        return self.buf_start + len(self.buf)

    def _emit(self, stop: int) -> np.ndarray:
        cfg, i = self.cfg, self.next_frame
        if stop <= i:
            return np.zeros((0, 2 * cfg.n_mels), np.float32)
        out = _logmel_slots(self.buf, self.buf_start, 2 * i, 2 * (stop - i), cfg).reshape(-1, 2 * cfg.n_mels)
        self.next_frame = stop
        keep_from = first_sample_needed(stop, cfg)
        drop = min(max(0, keep_from - self.buf_start), len(self.buf))
        self.buf, self.buf_start = self.buf[drop:], self.buf_start + drop
        return out

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Adds samples; returns ``n×2·n_mels`` features for the frames completed by them (n may be 0)."""
        if self.finished:
            raise UserError("LogMelStream.push after finish(); start a new stream")
        self.buf = np.concatenate([self.buf, np.asarray(chunk, np.float32).reshape(-1)])
        out = []
        while True:  # emit complete frames in blocks; frame i is complete when c_{2i+1} + n_fft/2 ≤ samples
            stop = self.next_frame
            while stop < self.next_frame + self.cfg.block_frames and self._complete(stop):
                stop += 1
            if stop == self.next_frame:
                break
            out.append(self._emit(stop))
        return np.concatenate(out) if out else self._emit(self.next_frame)

    def _complete(self, i: int) -> bool:
        return int(slot_centers(2 * i + 1, 1, self.cfg)[0]) + self.cfg.n_fft // 2 <= self.num_samples

    def finish(self) -> np.ndarray:
        """Ends the stream; returns the remaining frames (audio past the end counts as silence)."""
        self.finished = True
        T = num_video_frames(self.num_samples, self.cfg.fps, self.cfg.sample_rate)
        out = []
        while self.next_frame < T:
            out.append(self._emit(min(T, self.next_frame + self.cfg.block_frames)))
        return np.concatenate(out) if out else self._emit(self.next_frame)


def iter_frame_features(chunks: Iterable[np.ndarray], cfg: AudioConfig) -> Iterator[np.ndarray]:
    """Streams log-mel ``n×A`` blocks for an iterable of wave chunks (e.g. ``vasajax.media.iter_audio(path)``)."""
    stream = LogMelStream(cfg)
    for chunk in chunks:
        out = stream.push(chunk)
        if len(out):
            yield out
    out = stream.finish()
    if len(out):
        yield out


# ------------------------------------------------------------------------------------------- wav2vec2


@functools.lru_cache(maxsize=2)
def _load_wav2vec2(checkpoint: str):
    # Lazy on purpose: the log-mel path (data prep workers, the default audio encoder) needs numpy only, and
    # wav2vec2 pulls in JAX and Flax.
    from vasajax.motion import wav2vec2, wav2vec2_params

    w_cfg, model = wav2vec2_params.load(checkpoint)
    forward, params = wav2vec2.make_forward(model)
    d = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    pre = d / "preprocessor_config.json"
    do_normalize = bool(json.loads(pre.read_text()).get("do_normalize", True)) if pre.is_file() else True
    return w_cfg, forward, params, do_normalize


def _wav2vec2_model(cfg: AudioConfig):
    if not cfg.checkpoint:
        raise UserError(
            "audio kind 'wav2vec2' needs AudioConfig.checkpoint: a local directory with a Hugging "
            "Face config.json + model.safetensors (or use kind='logmel')"
        )
    return _load_wav2vec2(str(Path(cfg.checkpoint).expanduser().resolve()))


def to_video_rate(feats_50hz_NxD: np.ndarray, num_frames: int, cfg: AudioConfig, rate: float = 50.0) -> np.ndarray:
    """Resamples features at ``rate`` Hz (row ``j`` centred at time ``(j+½)/rate``) to two per video frame:
    ``num_frames×2D``, slot ``k`` at time ``(k+½)/(2·fps)``, by linear interpolation (edge rows repeat).
    At 25 fps and 50 Hz the slot times coincide with the rows, so this is an exact copy."""
    src_NxD = np.asarray(feats_50hz_NxD, np.float32)
    a, b = _row_positions(2 * num_frames, cfg, rate)  # slot k sits at row position a_k / b
    j0 = a // b  # floor, also for negative a
    w_S = ((a - j0 * b) / b).astype(np.float32)
    w_S = np.where(j0 < 0, 0.0, w_S)[:, None]
    j0 = np.clip(j0, 0, len(src_NxD) - 1)
    j1 = np.minimum(j0 + 1, len(src_NxD) - 1)
    out_SxD = (1 - w_S) * src_NxD[j0] + w_S * src_NxD[j1]
    return out_SxD.reshape(num_frames, -1).astype(np.float32)


def _row_positions(num_slots: int, cfg: AudioConfig, rate: float) -> tuple[np.ndarray, int]:
    """Fractional row index ``a_k / b`` of slot ``k`` in a ``rate`` Hz sequence whose row ``j`` is centred at
    ``(j+½)/rate``: ``(k+½)·rate/(2·fps) − ½``, as exact integers."""
    ratio = Fraction(str(rate)) / (2 * cfg.fps_fraction)
    k = np.arange(num_slots, dtype=np.int64)
    return (2 * k + 1) * ratio.numerator - ratio.denominator, 2 * ratio.denominator


def wav2vec2_features(wave_16k: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """``T×2·hidden`` wav2vec2 features (``w2v_layer``) aligned to video frames; see the module docstring.

    Audio up to ``w2v_window_s`` runs in one pass (one jit shape per length); longer audio in windows of that
    length that each see ``w2v_context_s`` more audio on both sides (one jit shape in all).
    """
    w_cfg, forward, params, do_norm_ckpt = _wav2vec2_model(cfg)
    do_norm = do_norm_ckpt if cfg.w2v_normalize is None else cfg.w2v_normalize
    wave = np.asarray(wave_16k, np.float32).reshape(-1)
    T = num_video_frames(wave.size, cfg.fps, cfg.sample_rate)
    if T == 0:
        return np.zeros((0, 2 * w_cfg.hidden_size), np.float32)
    hop, rf = w_cfg.total_stride, w_cfg.receptive_field
    shift = (rf - hop) // 2  # 40 for the standard convs: output j then centres on hop·j + hop/2
    rate = cfg.sample_rate / hop
    a, b = _row_positions(max(2 * T, 1), cfg, rate)
    n_out = max(1, -(-int(a[-1]) // b) + 1)  # rows up to ⌈last slot position⌉: 2T at 25 fps

    def run(x_N: np.ndarray) -> np.ndarray:
        if do_norm:
            x_N = (x_N - x_N.mean()) / np.sqrt(x_N.var() + 1e-7)
        last, hidden = forward(params, x_N[None])
        out = last if cfg.w2v_layer == -1 else hidden[cfg.w2v_layer]
        return np.asarray(out[0])

    L = hop * (n_out - 1) + rf  # model input for exactly n_out outputs: 40 zeros, the wave, zeros

    def model_input(start: int, length: int) -> np.ndarray:
        """Samples [start, start+length) of that input, built on the fly (no copy of the whole wave)."""
        x = np.zeros(length, np.float32)
        a, b = max(start, shift), min(start + length, L, shift + wave.size)
        if b > a:
            x[a - start : b - start] = wave[a - shift : b - shift]
        return x

    win = max(1, round(cfg.w2v_window_s * rate))
    if n_out <= win:
        feats = run(model_input(0, L))
    else:  # outputs [j, j+win) from a window that also sees ctx rows before and after
        ctx = round(cfg.w2v_context_s * rate)
        seg = hop * (win + 2 * ctx - 1) + rf
        parts = [run(model_input((j - ctx) * hop, seg))[ctx : ctx + win] for j in range(0, n_out, win)]
        feats = np.concatenate(parts)[:n_out]
    return to_video_rate(feats, T, cfg, rate=rate)


# ------------------------------------------------------------------------------------------ entry point


@dataclasses.dataclass(frozen=True)
class FeatureStats:
    """Per-dimension statistics for normalising features: ``(x − mean) / std``."""

    mean: np.ndarray
    """``A`` means."""
    std: np.ndarray
    """``A`` standard deviations (floored at 1e-3 by ``compute``)."""

    @classmethod
    def compute(cls, features: Iterable[np.ndarray]) -> FeatureStats:
        """Statistics over all rows of an iterable of ``T×A`` arrays (streaming, float64 sums)."""
        n, s, ss = 0, 0.0, 0.0
        for f in features:
            f = np.asarray(f, np.float64)
            n, s, ss = n + len(f), s + f.sum(0), ss + (f * f).sum(0)
        if n == 0:
            raise UserError("FeatureStats.compute got no feature rows")
        mean = s / n
        std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
        return cls(mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32))

    def save(self, path: str | os.PathLike) -> None:
        """Writes an ``.npz`` with ``mean`` and ``std``."""
        np.savez(path, mean=self.mean, std=self.std)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        """Reads what ``save`` wrote (no pickle)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mean"], z["std"])

    def __call__(self, features_TxA: np.ndarray) -> np.ndarray:
        if features_TxA.shape[-1] != self.mean.shape[-1]:
            raise UserError(
                f"feature stats have dim {self.mean.shape[-1]} but features have "
                f"{features_TxA.shape[-1]}; recompute the stats for this audio config"
            )
        return ((features_TxA - self.mean) / self.std).astype(np.float32)


def feature_dim(cfg: AudioConfig) -> int:
    """``A``, the per-video-frame feature size (reads the checkpoint's config.json for wav2vec2)."""
    if cfg.kind == "logmel":
        return 2 * cfg.n_mels
    if not cfg.checkpoint:
        raise UserError("audio kind 'wav2vec2' needs AudioConfig.checkpoint (a local HF checkpoint directory)")
    from vasajax.motion import wav2vec2_params  # lazy: JAX/Flax only for wav2vec2 (see _load_wav2vec2)

    return 2 * wav2vec2_params.read_config(cfg.checkpoint).hidden_size


def frame_features(wave_16k: np.ndarray, cfg: AudioConfig, stats: FeatureStats | None = None) -> np.ndarray:
    """The one entry point for stage 2: mono wave at ``cfg.sample_rate`` → ``T×A`` float32 features,
    ``T = num_video_frames(len(wave))``, row ``i`` = video frame ``i`` (see the module docstring for exactly
    which samples feed it). ``stats`` applies per-dimension normalisation on top of the fixed one."""
    wave = np.asarray(wave_16k)
    if wave.ndim != 1:
        raise UserError(f"frame_features expects a mono 1-D wave, got shape {wave.shape}; see vasajax.media.read_audio")
    if not np.all(np.isfinite(wave)):
        raise UserError("audio contains NaN or infinite samples")
    feats = logmel_features(wave, cfg) if cfg.kind == "logmel" else wav2vec2_features(wave, cfg)
    return stats(feats) if stats is not None else feats
