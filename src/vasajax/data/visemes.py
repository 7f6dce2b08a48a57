"""Phoneme → viseme table and coarticulated mouth tracks for SynthTalk.

VASA-1 (§3.2) learns lip motion from audio; SynthTalk (DESIGN.md) renders mouth shapes that follow the
phonemes espeak-ng reports, so that the audio–lip relation in the synthetic clips is known and learnable.
Each phoneme maps to one or more mouth targets (jaw opening, lip spread, lip rounding); diphthongs and
r-coloured vowels split their duration between their parts. Targets are keyed at segment centres,
interpolated and smoothed with a Gaussian (a simple coarticulation model), then sampled per video frame.
Stressed vowels open wider (×1.15), unstressed ones less (×0.85).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Viseme:
    """A mouth target; all values in [0, 1] except ``spread`` in [-1, 1]."""

    cls: int
    """Viseme class id (index into :data:`VISEME_NAMES`)."""
    jaw: float
    """Jaw opening (1 = widest open vowel)."""
    spread: float
    """Lip spreading (+) as in 'ee'; negative values narrow the mouth."""
    round: float
    """Lip rounding/protrusion as in 'oo', 'w'."""


VISEME_NAMES = (
    "sil", "PBM", "FV", "TH", "TDNL", "SZ", "SH", "KG", "R", "W", "Y",
    "AA", "AE", "AH", "AO", "EH", "IH", "IY", "UH", "UW", "OW", "ER", "HH",
)  # fmt: skip
"""Viseme classes (a common 20-odd class set: silence, consonant groups, vowel qualities)."""

_V = {name: i for i, name in enumerate(VISEME_NAMES)}


def _v(cls: str, jaw: float, spread: float = 0.0, rnd: float = 0.0) -> Viseme:
    return Viseme(_V[cls], jaw, spread, rnd)


SILENCE = _v("sil", 0.0)

# IPA symbol (as espeak-ng writes it, stress and length marks removed) → mouth target.
TABLE: dict[str, Viseme] = {
    # consonants
    "p": _v("PBM", 0.0), "b": _v("PBM", 0.0), "m": _v("PBM", 0.0),
    "f": _v("FV", 0.08, 0.1), "v": _v("FV", 0.08, 0.1),
    "θ": _v("TH", 0.18, 0.1), "ð": _v("TH", 0.16, 0.1),
    "t": _v("TDNL", 0.18, 0.15), "d": _v("TDNL", 0.18, 0.15), "n": _v("TDNL", 0.16, 0.1),
    "l": _v("TDNL", 0.24, 0.1), "ɾ": _v("TDNL", 0.2, 0.1), "ʔ": _v("TDNL", 0.15),
    "s": _v("SZ", 0.1, 0.35), "z": _v("SZ", 0.1, 0.35),
    "ʃ": _v("SH", 0.14, -0.2, 0.6), "ʒ": _v("SH", 0.14, -0.2, 0.6),
    "tʃ": _v("SH", 0.15, -0.2, 0.55), "dʒ": _v("SH", 0.15, -0.2, 0.55),
    "k": _v("KG", 0.26), "g": _v("KG", 0.26), "ɡ": _v("KG", 0.26), "ŋ": _v("KG", 0.22), "x": _v("KG", 0.3),
    "ɹ": _v("R", 0.18, -0.1, 0.45), "r": _v("R", 0.18, -0.1, 0.45),
    "w": _v("W", 0.1, -0.4, 0.9), "ʍ": _v("W", 0.1, -0.4, 0.9),
    "j": _v("Y", 0.16, 0.45),
    "h": _v("HH", 0.35),
    # vowels
    "ɑ": _v("AA", 1.0, 0.05), "a": _v("AA", 0.95, 0.15), "ɒ": _v("AO", 0.85, -0.1, 0.4),
    "æ": _v("AE", 0.85, 0.35), "ʌ": _v("AH", 0.7), "ɐ": _v("AH", 0.65),
    "ɔ": _v("AO", 0.75, -0.15, 0.55),
    "ɛ": _v("EH", 0.6, 0.35), "e": _v("EH", 0.5, 0.4),
    "ɪ": _v("IH", 0.35, 0.5), "i": _v("IY", 0.25, 0.7), "ᵻ": _v("IH", 0.35, 0.4),
    "ʊ": _v("UH", 0.35, -0.2, 0.6), "u": _v("UW", 0.25, -0.35, 0.95),
    "o": _v("OW", 0.55, -0.25, 0.75),
    "ə": _v("AH", 0.45), "ɚ": _v("ER", 0.4, -0.1, 0.35), "ɜ": _v("ER", 0.45, -0.05, 0.3),
    "ɐ̃": _v("AH", 0.6),
}  # fmt: skip

VOWELS = frozenset("ɑaɒæʌɐɔɛeɪiᵻʊuoəɚɜ")
"""Vowel symbols (used for stress scaling and the 'mouth opens on vowels' property)."""


def segments(name: str) -> list[tuple[Viseme, bool]]:
    """Split one espeak-ng phoneme name into mouth targets: [(viseme, is_vowel)], longest match first."""
    if name == "_":
        return [(SILENCE, False)]
    s = name.replace("ˈ", "").replace("ˌ", "").replace("ː", "").replace("ˑ", "")
    out, i = [], 0
    while i < len(s):
        for n in (2, 1):
            key = s[i : i + n]
            if len(key) == n and key in TABLE:
                out.append((TABLE[key], key[0] in VOWELS))
                i += n
                break
        else:
            i += 1  # diacritics and unknown symbols carry no mouth target of their own
    return out or [(_v("AH", 0.2), False)]


def is_vowel(name: str) -> bool:
    """Whether an espeak-ng phoneme name contains a vowel."""
    return any(v for _, v in segments(name))


def mouth_tracks(
    phonemes: list[tuple[str, float, float]],
    times_s: np.ndarray,
    *,
    smooth_s: float = 0.028,
    articulation: float = 1.0,
) -> dict[str, np.ndarray]:
    """Per-frame mouth targets for phonemes [(name, start_s, end_s)] sampled at ``times_s``.

    Returns float32 arrays ``jaw``, ``spread``, ``round`` and int32 ``viseme`` (class at each time), each
    shaped like ``times_s``. ``articulation`` scales the jaw opening (a per-speaker trait).
    """
    key_t, key_vals, spans = [0.0], [(0.0, 0.0, 0.0)], []
    for name, start, end in phonemes:
        parts = segments(name)
        stress = 1.15 if "ˈ" in name else (0.85 if "ˌ" not in name else 1.0)
        dur = (end - start) / len(parts)
        for k, (vis, vowel) in enumerate(parts):
            a, b = start + k * dur, start + (k + 1) * dur
            jaw = vis.jaw * (stress if vowel else 1.0) * articulation
            if vis is SILENCE and b - a > 0.16:  # a real pause: the mouth rests closed
                key_t += [a + 0.07, b - 0.07]
                key_vals += [(0.0, 0.0, 0.0)] * 2
            else:
                key_t.append(0.5 * (a + b))
                key_vals.append((jaw, vis.spread, vis.round))
            spans.append((a, b, vis.cls))
    end_t = max(phonemes[-1][2] if phonemes else 0.0, float(np.max(times_s, initial=0.0))) + 1.0
    key_t.append(end_t)
    key_vals.append((0.0, 0.0, 0.0))
    key_t_arr, vals = np.asarray(key_t), np.asarray(key_vals)
    order = np.argsort(key_t_arr, kind="stable")
    key_t_arr, vals = key_t_arr[order], vals[order]
    # Interpolate on a 1 kHz grid, smooth (coarticulation), then sample at the frame times.
    grid = np.arange(0.0, end_t, 0.001)
    dense = np.stack([np.interp(grid, key_t_arr, vals[:, c]) for c in range(3)], -1)
    sigma = max(smooth_s / 0.001, 1e-3)
    kernel = np.exp(-0.5 * (np.arange(-4 * sigma, 4 * sigma + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    pad = len(kernel) // 2
    dense = np.stack([np.convolve(np.pad(dense[:, c], pad, mode="edge"), kernel, mode="valid") for c in range(3)], -1)
    out = {
        k: np.interp(times_s, grid, dense[:, c]).astype(np.float32) for c, k in enumerate(("jaw", "spread", "round"))
    }
    vis_id = np.zeros(np.shape(times_s), np.int32)
    for a, b, cls in spans:
        vis_id[(times_s >= a) & (times_s < b)] = cls
    out["viseme"] = vis_id
    return out
