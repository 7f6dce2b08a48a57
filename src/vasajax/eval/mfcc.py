"""MFCCs exactly as ``python_speech_features.mfcc`` computes them (SyncNet's audio input; VASA-1's Sync-C/D, §4.2).

Defaults of that library: 25 ms frames every 10 ms (no window function), pre-emphasis 0.97, a 512-point (next power
of two) power spectrum, 26 mel filters, log, DCT-II (orthonormal), 13 coefficients, sinusoidal liftering L = 22, and
coefficient 0 replaced by the log frame energy. Tested against the library itself (``tests/test_eval_syncnet.py``).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft


def _hz2mel(hz):
    return 2595 * np.log10(1 + np.asarray(hz, np.float64) / 700.0)


def _mel2hz(mel):
    return 700 * (10 ** (np.asarray(mel, np.float64) / 2595.0) - 1)


@functools.cache
def _filterbank(nfilt: int, nfft: int, sr: int) -> np.ndarray:
    bins = np.floor((nfft + 1) * _mel2hz(np.linspace(_hz2mel(0), _hz2mel(sr / 2), nfilt + 2)) / sr)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def mfcc(signal: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
    """``python_speech_features.mfcc(signal, sample_rate)`` with its defaults (25 ms rectangular frames every
    10 ms, pre-emphasis 0.97, 26 mel filters, 512-point FFT, 13 cepstra, lifter 22, log energy as c0): T×13."""
    sig = np.asarray(signal, np.float64)
    sig = np.append(sig[:1], sig[1:] - 0.97 * sig[:-1])
    flen, step = int(np.floor(0.025 * sample_rate + 0.5)), int(np.floor(0.01 * sample_rate + 0.5))
    n = 1 if len(sig) <= flen else 1 + int(np.ceil((len(sig) - flen) / step))
    sig = np.concatenate([sig, np.zeros((n - 1) * step + flen - len(sig))])
    frames = sig[np.arange(flen)[None, :] + step * np.arange(n)[:, None]]
    nfft = 1
    while nfft < flen:
        nfft *= 2
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = pspec.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    feat = pspec @ _filterbank(26, nfft, sample_rate).T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    cep = scipy.fft.dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :13]
    cep *= 1 + 11.0 * np.sin(np.pi * np.arange(13) / 22)
    cep[:, 0] = np.log(energy)
    return cep
