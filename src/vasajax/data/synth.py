"""SynthTalk: an offline, learnable talking-face dataset (DESIGN.md, "SynthTalk").

VASA-1 trains its motion model (§3.2) on talking-face videos labelled with head pose, gaze, head distance
and emotion. None can be downloaded here, so SynthTalk makes such clips from a real portrait photo and a
sentence: espeak-ng speaks the sentence (``speech.py``) and reports phoneme timings; a phoneme → viseme
table (``visemes.py``) gives jaw/lip targets; head sway and nods, blinks every 2–6 s, gaze shifts and a
smile (the emotion factor) are sampled from simple stochastic models. The portrait's 478 MediaPipe
landmarks are moved in 3D (mouth shapes, eyelids and iris in a face-local frame, then a rigid head
rotation about a pivot behind the face) and the photo is warped piecewise-affinely along the canonical
face mesh; two rings of control points carry hair and neck along (the neck less), while the image border
stays still. The mouth interior (dark cavity, upper teeth, tongue) is painted where the lips part.

Every frame comes with exact ground truth (the rendered landmarks, pose, mouth opening, blink, gaze,
emotion, phoneme and viseme), so lip-sync, pose and gaze control are measurable. SynthTalk is a teaching
and testing set — a warped still photo with synthetic speech — not a substitute for real video data.

    cfg = SynthConfig.small()
    portraits = prepare_portraits(load_portraits(), cfg)           # bundled astronaut + grace_hopper
    clip = synthesize_clip(portraits[0], "Hello there.", Voice(variant="f3"), seed=0, cfg=cfg)
    write_clip(clip, "out/", "clip0000")        # clip0000.mp4 / .wav / .npz / .json
    vasajax synth --out DIR --num-clips 100     # the CLI (cli_main)

The dataset recipe: clip-record shards (the format ``vasajax prep`` writes; tracker labels, ground truth in
each record) for a train split and a held-out split (unseen sentences, voice, optionally portrait), in local
worker processes (``vasajax.data.synth_shards``; N=200 at 256²: 325 CPU-s, ~3 min wall on an idle 2-core CPU)::

    vasajax synth --shards --out data/synthtalk-small --num-clips 200 --size 256 --workers 2

Sections: config · landmark indices · portrait rig (crop, face-local frame, deformation bases,
triangulation) · motion sampling · deformation and rendering · clips and I/O · inputs · command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import sys
from collections.abc import Sequence

import cv2
import numpy as np
import scipy.ndimage
import scipy.spatial

from vasajax.data import visemes
from vasajax.data.speech import PAUSE, SAMPLE_RATE, Speech, Voice, synthesize_speech
from vasajax.errors import UserError

# --------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """How SynthTalk clips look and move."""

    size: int = 256
    """Frame side S in pixels (frames are S×S)."""
    fps: float = 25.0
    """Video frame rate."""
    lead_in_s: float = 0.4
    """Silence before the speech starts."""
    tail_s: float = 0.5
    """Silence after the speech ends."""
    max_speech_s: float = 12.0
    """Longer speech is cut (at a pause when possible) to keep clips bounded."""
    crop_scale: float = 1.35
    """``facetrack.CropConfig.scale`` of the face crop (the crop data preparation uses; larger = looser)."""
    mouth_gap: float = 0.21
    """Inner-lip gap at full jaw opening, as a fraction of the outer-eye-corner distance."""
    head_yaw_deg: float = 5.0
    """Standard deviation of the slow head yaw sway (degrees)."""
    head_pitch_deg: float = 3.0
    """Standard deviation of the slow head pitch sway (degrees)."""
    head_roll_deg: float = 2.0
    """Standard deviation of the slow head roll sway (degrees)."""
    nod_deg: float = 3.5
    """Mean amplitude of a nod on a stressed syllable (degrees)."""
    nod_prob: float = 0.35
    """Probability that a stressed syllable carries a nod."""
    translate_frac: float = 0.008
    """Standard deviation of head translation, as a fraction of S."""
    scale_frac: float = 0.01
    """Standard deviation of head scale changes (moving towards/away from the camera)."""
    blink_interval_s: tuple[float, float] = (2.0, 6.0)
    """Range of the time between blinks."""
    gaze_deg: float = 14.0
    """Largest gaze yaw away from the camera (pitch uses 0.6×)."""
    gaze_interval_s: tuple[float, float] = (0.8, 2.8)
    """Range of the time between gaze shifts."""
    smile_prob: float = 0.6
    """Probability that a clip smiles (its emotion level is then uniform in [0.3, 1])."""
    crf: int = 20
    """x264 constant rate factor for the mp4."""

    @classmethod
    def tiny(cls) -> SynthConfig:
        """Tests: 128² frames, short silences."""
        return cls(size=128, lead_in_s=0.2, tail_s=0.2, max_speech_s=3.0)

    @classmethod
    def small(cls) -> SynthConfig:
        """The shipped demo's resolution: 256²."""
        return cls()

    @classmethod
    def paper(cls) -> SynthConfig:
        """VASA-1's resolution: 512²."""
        return cls(size=512, crf=18)


# --------------------------------------------------------------------------------------------------------
# MediaPipe landmark indices (478 = 468 mesh + 10 iris)
# --------------------------------------------------------------------------------------------------------

UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
EYES = (  # (upper lid, lower lid, iris centre, iris ring), corner to corner; image-left eye first
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133), 468,
     (469, 470, 471, 472)),
    ((263, 466, 388, 387, 386, 385, 384, 398, 362), (263, 249, 390, 373, 374, 380, 381, 382, 362), 473,
     (474, 475, 476, 477)),
)  # fmt: skip
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
EYE_CORNERS = (33, 263)


def mouth_opening(landmarks_Nx3: np.ndarray) -> np.ndarray:
    """Inner-lip gap (landmarks 13/14) over the outer-eye-corner distance (33/263); works on ...×478×2|3."""
    lm = np.asarray(landmarks_Nx3, np.float64)[..., :2]
    gap = np.linalg.norm(lm[..., 13, :] - lm[..., 14, :], axis=-1)
    return gap / np.linalg.norm(lm[..., EYE_CORNERS[0], :] - lm[..., EYE_CORNERS[1], :], axis=-1)


# --------------------------------------------------------------------------------------------------------
# Portrait rig: crop, face-local frame, deformation bases, triangulation (computed once per portrait)
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Portrait:
    """A portrait prepared for animation at one size (see :func:`prepare_portrait`)."""

    name: str
    image: np.ndarray  # S×S×3 uint8, the face-centred crop
    landmarks: np.ndarray  # 478×3 float, crop pixels (z in the same scale, smaller = nearer)
    rest: np.ndarray  # 478×3, landmarks with the mouth closed (the neutral pose that motion is added to)
    origin: np.ndarray  # (2,) mouth centre; face-local frame origin
    axes: np.ndarray  # 2×2 rows: u (eye line, image-right), v (down the face)
    unit: float  # outer-eye-corner distance in pixels (face-local unit)
    bases: dict[str, np.ndarray]  # name → 478×2 displacement in face-local units per unit parameter
    lid_spread: tuple[np.ndarray, ...]  # per eye: 478×9 weights spreading upper-lid motion to the skin above
    ring_src: np.ndarray  # R×3 control points around the face (hair, ears, neck)
    ring_weight: np.ndarray  # (R,) how much each ring point follows the head
    border: np.ndarray  # B×2 fixed points on the image border
    face_tris: np.ndarray  # K×3 indices into the landmark array (canonical mesh, eyes re-fanned)
    face_eye: np.ndarray  # (K,) int: which eye's interior a face triangle fans (-1: skin)
    eye_texture: np.ndarray  # S×S×3 uint8: the crop with each eye's interior extended outwards (for gaze)
    outer_tris: np.ndarray  # J×3 indices into [landmarks, ring, border]
    pivot: np.ndarray  # (3,) head rotation centre
    matrix: np.ndarray | None = None  # the tracker's 4×4 facial transformation matrix of the source, if any


def _local(points_Nx2: np.ndarray, origin: np.ndarray, axes: np.ndarray, unit: float) -> np.ndarray:
    return (points_Nx2 - origin) @ axes.T / unit


def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _crop(image: np.ndarray, landmarks: np.ndarray, size: int, crop_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The data-preparation face crop (``facetrack``), so SynthTalk frames are framed like real clips."""
    from vasajax.facetrack.crop import CropConfig, apply_crop, crop_params, image_to_crop_coords

    params = crop_params(landmarks, CropConfig(size=size, scale=crop_scale))
    crop = apply_crop(image, params, size, border="edge")
    return crop, image_to_crop_coords(landmarks, params, size)


def _mouth_bases(lm_loc: np.ndarray) -> dict[str, np.ndarray]:
    """Per-landmark displacement (face-local units) per unit of each mouth parameter."""
    n = len(lm_loc)
    u, v = lm_loc[:, 0], lm_loc[:, 1]
    hw = 0.5 * abs(lm_loc[LOWER_INNER[-1], 0] - lm_loc[LOWER_INNER[0], 0])  # half mouth width
    up = lm_loc[list(UPPER_INNER)]
    order = np.argsort(up[:, 0])
    v_lip = np.interp(np.clip(u, -hw, hw), up[order, 0], up[order, 1])
    d = v - v_lip  # distance below the lip line
    profile = np.clip(1 - (u / hw) ** 2, 0, 1) ** 0.6  # lips open most at the centre, not at the corners
    below = _smoothstep(d, 0.0, 0.45)
    lateral = np.clip(1 - np.maximum(np.abs(u) - hw, 0) / 0.55, 0, 1)
    gate = np.where(np.abs(u) <= hw, (d > -1e-3).astype(float), _smoothstep(d, -0.1, 0.05))
    jaw = (profile * (1 - below) + below) * lateral * gate
    jaw[list(LOWER_INNER)] = profile[list(LOWER_INNER)]
    jaw[list(UPPER_INNER)] = -0.08 * profile[list(UPPER_INNER)]  # the upper lip lifts a little
    jaw[list(UPPER_OUTER)] = -0.04 * profile[list(UPPER_OUTER)]
    near = np.exp(-0.5 * ((u / (hw * 1.6)) ** 2 + ((v - 0.05) / 0.32) ** 2))  # mouth region
    zeros = np.zeros((n, 2))
    jaw_b = zeros.copy()
    jaw_b[:, 1] = jaw
    spread = zeros.copy()
    spread[:, 0] = 0.22 * np.clip(u / hw, -1.3, 1.3) * hw * near
    rnd = zeros.copy()
    rnd[:, 0] = -0.38 * np.clip(u / hw, -1.3, 1.3) * hw * near
    rnd[:, 1] = 0.05 * np.where(d > 0, 1.0, -1.0) * near * profile  # rounded lips pout open a little
    rnd[list(UPPER_INNER) + list(LOWER_INNER), 1] = 0.0
    smile = zeros.copy()
    for side in (-1.0, 1.0):  # corners go up and out; cheeks rise
        corner = lm_loc[UPPER_OUTER[0 if side < 0 else -1]]
        r2 = ((u - corner[0]) / 0.28) ** 2 + ((v - corner[1]) / 0.3) ** 2
        w = np.exp(-0.5 * r2)
        smile[:, 0] += side * 0.07 * w
        smile[:, 1] += -0.07 * w
        cheek = np.exp(-0.5 * (((u - corner[0] * 1.5) / 0.25) ** 2 + ((v + 0.3) / 0.2) ** 2))
        smile[:, 1] += -0.04 * cheek
    return {"jaw": jaw_b, "spread": spread, "round": rnd, "smile": smile}


def _lid_spread(lm_loc: np.ndarray, upper: Sequence[int]) -> np.ndarray:
    """478×9 weights: skin above an upper lid follows the lid (fading over ~0.12 eye-distance units)."""
    lid = lm_loc[list(upper)]
    d = np.linalg.norm(lm_loc[:, None, :] - lid[None], axis=-1)  # 478×9
    nearest = d.argmin(1)
    order = np.argsort(lid[:, 0])
    above = lm_loc[:, 1] < np.interp(lm_loc[:, 0], lid[order, 0], lid[order, 1])
    w = np.zeros_like(d)
    w[np.arange(len(d)), nearest] = 0.55 * np.exp(-0.5 * (d.min(1) / 0.07) ** 2) * above
    w[list(upper)] = 0.0
    return w


def _eye_texture(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The image with each eye's opening extended outwards (nearest interior pixel), so that the eyeball
    texture can slide sideways for gaze shifts without pulling in eyelid skin."""
    out = image.copy()
    for upper, lower, _, _ in EYES:
        contour = np.concatenate([lm[list(upper), :2], lm[list(lower)[-2:0:-1], :2]])
        width = float(np.ptp(contour[:, 0]))
        (x0, y0), (x1, y1) = contour.min(0) - 0.6 * width, contour.max(0) + 0.6 * width
        x0, y0 = max(int(x0), 0), max(int(y0), 0)
        x1, y1 = min(int(np.ceil(x1)), image.shape[1]), min(int(np.ceil(y1)), image.shape[0])
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, [np.round((contour - (x0, y0)) * 16 - 8).astype(np.int32)], 1, cv2.LINE_8, 4)
        inside = cv2.erode(inside, np.ones((2, 2), np.uint8)) if inside.sum() > 20 else inside
        if not inside.any():
            continue
        _, (iy, ix) = scipy.ndimage.distance_transform_edt(inside == 0, return_indices=True)
        out[y0:y1, x0:x1] = image[y0:y1, x0:x1][iy, ix]
    return out


def _eye_fans(upper: Sequence[int], lower: Sequence[int], iris: int) -> list[tuple[int, int, int]]:
    ring = list(upper) + list(lower[-2:0:-1])  # closed contour
    return [(iris, ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]


def prepare_portrait(
    image: np.ndarray,
    cfg: SynthConfig,
    *,
    name: str = "portrait",
    landmarks: np.ndarray | None = None,
    matrix: np.ndarray | None = None,
) -> Portrait:
    """Crop a portrait around its face and build its animation rig.

    ``landmarks`` (478×3, image pixels) come from ``vasajax.facetrack`` when not given.
    """
    image = np.ascontiguousarray(np.asarray(image)[..., :3])
    if image.dtype != np.uint8 or image.ndim != 3:
        raise UserError(f"portrait {name!r} must be an H×W×3 uint8 image, got {image.dtype} {image.shape}")
    if landmarks is None:
        from vasajax.facetrack.tracker import track_image

        obs = track_image(image)
        landmarks, matrix = np.asarray(obs.landmarks, np.float64), np.asarray(obs.matrix)
    lm_img = np.asarray(landmarks, np.float64)
    if lm_img.shape != (478, 3):
        raise UserError(f"portrait {name!r}: need 478×3 face landmarks (mesh + iris), got {lm_img.shape}")
    crop, lm = _crop(image, lm_img, cfg.size, cfg.crop_scale)
    size = cfg.size

    # Face-local frame: u along the eye line, v down the face, unit = outer-eye-corner distance.
    ex = lm[EYE_CORNERS[1], :2] - lm[EYE_CORNERS[0], :2]
    unit = float(np.linalg.norm(ex))
    ex = ex / unit
    axes = np.stack([ex, np.array([-ex[1], ex[0]])])
    origin = 0.5 * (lm[UPPER_OUTER[0], :2] + lm[UPPER_OUTER[-1], :2])
    loc = _local(lm[:, :2], origin, axes, unit)

    # Rest pose: close the mouth (lower lip meets the upper lip; the jaw follows).
    gap = loc[list(LOWER_INNER), 1] - loc[list(UPPER_INNER), 1]
    bases = _mouth_bases(loc)
    centre_gap = float(np.max(gap, initial=0.0))
    close = -np.clip(centre_gap, 0, None) * bases["jaw"]
    close[list(LOWER_INNER), 1] = -np.clip(gap, 0, None)
    rest = lm.copy()
    rest[:, :2] += (close @ axes) * unit
    rest_loc = _local(rest[:, :2], origin, axes, unit)
    bases = _mouth_bases(rest_loc)
    lid_spread = tuple(_lid_spread(rest_loc, eye[0]) for eye in EYES)

    # Control rings (hair, ears, neck follow the head; less so further out and below the chin).
    oval = rest[list(FACE_OVAL)]
    centre = oval[:, :2].mean(0)
    rings, weights = [], []
    for scale, w_top, w_bottom in ((1.3, 0.95, 0.3), (1.75, 0.6, 0.05)):
        pts = centre + scale * (oval[:, :2] - centre)
        pts = np.clip(pts, 2.0, size - 3.0)
        dirv = _local(pts, centre, axes, 1.0)[:, 1]
        dirv = dirv / np.maximum(np.linalg.norm(pts - centre, axis=1), 1e-6)
        up = 0.5 * (1 - dirv)
        rings.append(np.concatenate([pts, oval[:, 2:3]], 1))
        weights.append(w_bottom + (w_top - w_bottom) * up**1.5)
    ring_src, ring_weight = np.concatenate(rings), np.concatenate(weights)
    k = 8
    edge = np.linspace(0, size - 1, k + 1)
    lo_, hi_ = np.zeros_like(edge), np.full_like(edge, size - 1)
    sides = [np.stack(xy, 1) for xy in ((edge, lo_), (edge, hi_), (lo_, edge), (hi_, edge))]
    border = np.unique(np.concatenate(sides), axis=0)

    # Triangles: canonical mesh (eye interiors replaced by fans around the iris centre) + outer strips.
    face_tris = _face_triangles()
    n_fan = len(EYES[0][0]) + len(EYES[0][1]) - 2
    face_eye = np.full(len(face_tris), -1, np.int32)
    face_eye[-2 * n_fan : -n_fan], face_eye[-n_fan:] = 0, 1
    n_lm, n_oval = 478, len(FACE_OVAL)
    idx_oval = np.array(FACE_OVAL)
    idx_r1, idx_r2 = n_lm + np.arange(n_oval), n_lm + n_oval + np.arange(n_oval)
    outer = []
    for a, b in ((idx_oval, idx_r1), (idx_r1, idx_r2)):
        for i in range(n_oval):
            j = (i + 1) % n_oval
            outer += [(a[i], b[i], b[j]), (a[i], b[j], a[j])]
    ring2_xy = ring_src[n_oval:, :2]
    pts = np.concatenate([ring2_xy, border])
    tri = scipy.spatial.Delaunay(pts).simplices
    path = _polygon_contains(ring2_xy, pts[tri].mean(1))
    for t in tri[~path]:
        outer.append(tuple(int(x + n_lm + n_oval) for x in t))  # ring2 and border are contiguous
    pivot = np.array([*lm[list(FACE_OVAL), :2].mean(0), lm[:, 2].max() + 0.35 * unit])
    pivot[:2] += 0.25 * unit * axes[1]  # a little below the face centre: nods pivot on the neck
    return Portrait(
        name=name, image=crop, landmarks=lm, rest=rest, origin=origin, axes=axes, unit=unit, bases=bases,
        lid_spread=lid_spread, ring_src=ring_src, ring_weight=ring_weight, border=border,
        face_tris=face_tris, face_eye=face_eye, eye_texture=_eye_texture(crop, lm),
        outer_tris=np.asarray(outer, np.int32), pivot=pivot, matrix=matrix,
    )  # fmt: skip


def _polygon_contains(poly_Px2: np.ndarray, pts_Nx2: np.ndarray) -> np.ndarray:
    import matplotlib.path

    return matplotlib.path.Path(poly_Px2).contains_points(pts_Nx2)


@functools.cache
def _canonical_triangles() -> np.ndarray:
    from vasajax import modelfiles

    return np.asarray(modelfiles.canonical_mesh().triangles, np.int32)


@functools.cache
def _face_triangles() -> np.ndarray:
    tris = _canonical_triangles()
    keep = np.ones(len(tris), bool)
    fans = []
    for upper, lower, iris, _ in EYES:
        contour = set(upper) | set(lower)
        keep &= ~np.all(np.isin(tris, list(contour)), axis=1)
        fans += _eye_fans(upper, lower, iris)
    return np.concatenate([tris[keep], np.asarray(fans, np.int32)])


# --------------------------------------------------------------------------------------------------------
# Motion: per-frame parameters from the speech and a seed
# --------------------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, n: int, sigma_frames: float) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation (in expectation)."""
    pad = int(4 * sigma_frames) + 1
    x = scipy.ndimage.gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma_frames)[pad:-pad]
    return x * np.sqrt(2 * np.sqrt(np.pi) * sigma_frames)


def _blinks(rng: np.random.Generator, t: np.ndarray, fps: float, interval: tuple[float, float]) -> np.ndarray:
    """Eyelid closure in [0, 1]: fast close (~80 ms), brief hold, slower open (~170 ms); peaks on frames."""
    out = np.zeros_like(t)
    peak = rng.uniform(0.3, min(2.0, interval[1]))
    while peak < t[-1] + 0.2:
        p = np.round(peak * fps) / fps  # the fully closed instant falls on a frame
        close, hold, open_ = rng.uniform(0.06, 0.1), rng.uniform(0.0, 0.04), rng.uniform(0.13, 0.22)
        x = np.where(t < p, 1 - (p - t) / close, np.where(t < p + hold, 1.0, 1 - (t - p - hold) / open_))
        out = np.maximum(out, _smoothstep(x, 0.0, 1.0))
        peak += rng.uniform(0.25, 0.45) if rng.random() < 0.1 else rng.uniform(*interval)  # some double blinks
    return out


def sample_motion(
    phonemes: Sequence[tuple[str, float, float]], n_frames: int, cfg: SynthConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-frame animation parameters (float32 arrays of length ``n_frames``, radians for angles).

    ``phonemes`` are (name, start_s, end_s) on the clip's time axis. Returns yaw, pitch, roll (head, relative
    to the portrait), tx, ty (fractions of S), scale, jaw, spread, round, viseme, blink, gaze_yaw,
    gaze_pitch (eyes relative to the head, ``facetrack.gaze_from_landmarks``'s convention: +yaw looks to the
    image right, +pitch looks up), smile and speaking.
    """
    fps, t = cfg.fps, np.arange(n_frames) / cfg.fps
    speaking = np.zeros(n_frames)
    for name, a, b in phonemes:
        if name != PAUSE:
            speaking[(t >= a) & (t < b)] = 1.0
    activity = scipy.ndimage.gaussian_filter1d(speaking, 0.3 * fps)
    articulation = rng.uniform(0.8, 1.15)
    m = visemes.mouth_tracks(list(phonemes), t, articulation=articulation)

    deg = np.pi / 180
    yaw = (
        cfg.head_yaw_deg * deg * (_noise(rng, n_frames, 0.7 * fps) + 0.4 * activity * _noise(rng, n_frames, 0.15 * fps))
    )
    pitch = (
        cfg.head_pitch_deg
        * deg
        * (_noise(rng, n_frames, 0.6 * fps) + 0.3 * activity * _noise(rng, n_frames, 0.12 * fps))
    )
    roll = cfg.head_roll_deg * deg * _noise(rng, n_frames, 0.8 * fps) + 0.15 * yaw
    for name, a, _ in phonemes:  # nods on stressed syllables: chin down, then back (~0.4 s)
        if "ˈ" in name and rng.random() < cfg.nod_prob:
            width, amp = rng.uniform(0.3, 0.5), cfg.nod_deg * deg * rng.uniform(0.6, 1.4)
            x = (t - a + 0.05) / width
            pitch += amp * np.where((x > 0) & (x < 1), 0.5 * (1 - np.cos(2 * np.pi * x)), 0.0)
    tx = cfg.translate_frac * _noise(rng, n_frames, 0.8 * fps)
    ty = cfg.translate_frac * _noise(rng, n_frames, 0.8 * fps)
    scale = np.exp(cfg.scale_frac * _noise(rng, n_frames, 1.0 * fps))

    blink = _blinks(rng, t, fps, cfg.blink_interval_s)

    # Gaze: fixations with quick saccades; half the shifts return to the camera. The eyes also
    # counter-rotate against head yaw/pitch (they keep looking where they were looking).
    gyaw, gpitch = np.zeros(n_frames), np.zeros(n_frames)
    cur, tc = np.zeros(2), rng.uniform(0.2, cfg.gaze_interval_s[1])
    gmax = cfg.gaze_deg * deg
    while tc < t[-1]:
        nxt = rng.uniform(-0.15, 0.15, 2) * gmax if rng.random() < 0.5 else rng.uniform(-1, 1, 2) * gmax
        nxt[1] *= 0.6
        s = np.clip((t - tc) * fps / 1.5, 0, 1)  # saccade over ~1.5 frames
        gyaw = np.where(t >= tc, cur[0] + (nxt[0] - cur[0]) * s, gyaw)
        gpitch = np.where(t >= tc, cur[1] + (nxt[1] - cur[1]) * s, gpitch)
        cur, tc = nxt, tc + rng.uniform(*cfg.gaze_interval_s)
    gyaw = np.clip(gyaw - 0.5 * yaw + 0.01 * _noise(rng, n_frames, 2.0), -1.2 * gmax, 1.2 * gmax)
    gpitch = np.clip(gpitch + 0.5 * pitch + 0.01 * _noise(rng, n_frames, 2.0), -0.8 * gmax, 0.8 * gmax)

    level = rng.uniform(0.3, 1.0) if rng.random() < cfg.smile_prob else 0.0
    smile = np.clip(level * (1 + 0.15 * _noise(rng, n_frames, 1.0 * fps)), 0, 1)
    out = dict(yaw=yaw, pitch=pitch, roll=roll, tx=tx, ty=ty, scale=scale, blink=blink, gaze_yaw=gyaw)
    out.update(gaze_pitch=gpitch, smile=smile, speaking=speaking, jaw=m["jaw"], spread=m["spread"], round=m["round"])
    out = {k: np.asarray(v, np.float32) for k, v in out.items()}
    out["viseme"] = m["viseme"]
    return out


# --------------------------------------------------------------------------------------------------------
# Deformation and rendering
# --------------------------------------------------------------------------------------------------------


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Image axes (x right, y down, z away from the camera); the angle conventions of
    ``facetrack.pose_from_matrix``: +yaw turns the nose to image right, +pitch tilts it down, +roll turns
    the head counter-clockwise in the image."""
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, sr, 0], [-sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def pose_landmarks(p: Portrait, f: dict[str, float], cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmarks (478×3), ring control points (R×3) and eyeball shifts (2×2) of one frame's parameters ``f``.

    Coordinates are continuous crop pixels (pixel (i, j) covers [j, j+1) × [i, i+1), as in ``facetrack``).
    Render with ``render_frame(p, *pose_landmarks(p, f, cfg))``.
    """
    b = p.bases
    d_loc = f["jaw"] * cfg.mouth_gap * b["jaw"] + f["spread"] * b["spread"] + f["round"] * b["round"]
    d_loc = d_loc + f["smile"] * b["smile"]
    lm = p.rest.copy()
    lm[:, :2] += (d_loc @ p.axes) * p.unit
    ex, ey = p.axes
    eye_shift = np.zeros((2, 3))
    for e, ((upper, lower, iris, iris_ring), spread) in enumerate(zip(EYES, p.lid_spread)):
        up, lo = lm[list(upper)], lm[list(lower)]
        g = lo - up
        lid_gaze = np.clip(-0.9 * f["gaze_pitch"], -0.15, 0.3)  # the upper lid follows the gaze down
        squint = 0.15 * f["smile"] * (1 - f["blink"])
        down = np.clip(0.9 * f["blink"] + lid_gaze * (1 - f["blink"]), -0.15, 0.9)
        rise = 0.1 * f["blink"] + squint
        new_up, new_lo = up + down * g, lo - rise * g
        lm[:, :2] += spread @ (new_up - up)[:, :2]
        opening = 1.0 - down - rise
        mid_old, mid_new = lo[4, :2], new_lo[4, :2]
        radius = 0.4 * np.linalg.norm(up[0, :2] - up[-1, :2])  # eyeball radius ≈ 0.8 half eye widths
        shift = radius * (np.sin(f["gaze_yaw"]) * ex - np.sin(f["gaze_pitch"]) * ey)
        ids = [iris, *iris_ring]
        rel = lm[ids, :2] + shift - mid_old
        rel_u, rel_v = rel @ ex, rel @ ey
        lm[ids, :2] = mid_new + np.outer(rel_u, ex) + np.outer(rel_v * max(opening, 0.02), ey)
        lm[list(upper)], lm[list(lower)] = new_up, new_lo
        eye_shift[e, :2] = (shift @ ex) * ex + (shift @ ey) * max(opening, 0.02) * ey
    rot = _rotation(f["yaw"], f["pitch"], f["roll"])
    shift3 = np.array([f["tx"], f["ty"], 0.0]) * cfg.size

    def rigid(x: np.ndarray) -> np.ndarray:
        return f["scale"] * (x - p.pivot) @ rot.T + p.pivot + shift3

    ring = p.ring_src + p.ring_weight[:, None] * (rigid(p.ring_src) - p.ring_src)
    return rigid(lm), ring, (f["scale"] * eye_shift @ rot.T)[:, :2]


def _triangle_map(dst_Px2: np.ndarray, tris_Kx3: np.ndarray, size: int) -> np.ndarray:
    """S×S int32: index of the triangle covering each pixel (later triangles drawn on top), -1 if none."""
    tid = np.full((size, size), -1, np.int32)
    fixed = np.round(dst_Px2 * 16 - 8).astype(np.int32)  # 4 fractional bits; cv2 puts pixel centres at j
    for k, tri in enumerate(tris_Kx3):
        cv2.fillConvexPoly(tid, fixed[tri], k, lineType=cv2.LINE_8, shift=4)
    return tid


def _affines(src_Px2: np.ndarray, dst_Px2: np.ndarray, tris_Kx3: np.ndarray) -> np.ndarray:
    """K×2×3 maps from destination pixel (x, y, 1) to source coordinates, one per triangle."""
    d = np.concatenate([dst_Px2[tris_Kx3], np.ones((len(tris_Kx3), 3, 1))], -1)  # K×3×3
    s = src_Px2[tris_Kx3]  # K×3×2
    det = np.linalg.det(d)
    ok = np.abs(det) > 1e-6
    m = np.zeros((len(tris_Kx3), 2, 3))
    m[ok] = np.swapaxes(np.linalg.solve(d[ok], s[ok]), 1, 2)
    m[~ok, :, 2] = s[~ok].mean(1)
    return m


def _fill(mask: np.ndarray, pts_Px2: np.ndarray) -> None:
    cv2.fillPoly(mask, [np.round(pts_Px2 * 16 - 8).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)


def _paint_mouth(img: np.ndarray, lm: np.ndarray, unit: float) -> None:
    """Paint the mouth interior (dark cavity, upper teeth, tongue) where the lips part."""
    gap = float(np.linalg.norm(lm[13, :2] - lm[14, :2]))
    if gap < 0.25:
        return
    poly = np.concatenate([lm[list(UPPER_INNER), :2], lm[list(LOWER_INNER)[-2:0:-1], :2]])
    size = img.shape[0]
    (x0, y0), (x1, y1) = np.clip(np.floor(poly.min(0)) - 3, 0, size), np.clip(np.ceil(poly.max(0)) + 3, 0, size)
    x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
    if x1 <= x0 or y1 <= y0:
        return
    win = img[y0:y1, x0:x1]  # work in a window around the mouth; points relative to it
    off = np.array([x0, y0], np.float64)
    up, poly = lm[list(UPPER_INNER), :2] - off, poly - off
    hw = (y1 - y0, x1 - x0)
    cavity = np.zeros(hw, np.uint8)
    _fill(cavity, poly)
    m = cavity.astype(np.float32)[..., None] / 255.0
    down = (lm[14, :2] - lm[13, :2]) / gap
    centre = 0.5 * (lm[13, :2] + lm[14, :2]) - off
    width = float(np.linalg.norm(up[-1] - up[0]))
    # Dark, warm cavity, darker towards the corners.
    ys, xs = np.mgrid[: hw[0], : hw[1]] + 0.5
    across = np.abs((xs - centre[0]) * down[1] - (ys - centre[1]) * down[0]) / (0.5 * width + 1e-6)
    shade = np.clip(1.0 - 0.7 * across**2, 0.25, 1.0)[..., None].astype(np.float32)
    layer = np.array([0.23, 0.07, 0.08], np.float32) * shade * 255
    # Tongue: a dull red mound rising from the lower lip.
    tongue = np.zeros(hw, np.uint8)
    tc = lm[14, :2] - off - down * 0.15 * gap
    centre_fx = (int(tc[0] * 16 - 8), int(tc[1] * 16 - 8))
    axes_fx = (int(0.3 * width * 16), int(0.35 * gap * 16))
    angle = -float(np.degrees(np.arctan2(down[0], -down[1])))
    cv2.ellipse(tongue, centre_fx, axes_fx, angle, 0, 360, 255, -1, cv2.LINE_AA, 4)
    tw = tongue.astype(np.float32)[..., None] / 255.0 * min(1.0, gap / (0.12 * unit))
    layer = layer * (1 - tw) + tw * np.array([0.5, 0.2, 0.22], np.float32) * shade * 255
    # Teeth: a band under the upper lip, narrower than the mouth.
    tooth = min(0.4 * gap, 0.06 * unit)
    inner = centre + (up[1:-1] - centre) * np.array([0.82, 1.0])  # (lower teeth stay hidden by the lip)
    band = np.zeros(hw, np.uint8)
    _fill(band, np.concatenate([inner, inner[::-1] + tooth * down]))
    bw = cv2.GaussianBlur(band, (3, 3), 0.6).astype(np.float32)[..., None] / 255.0
    layer = layer * (1 - bw) + bw * np.array([0.86, 0.8, 0.7], np.float32) * np.clip(shade * 1.1, 0, 1) * 255
    win[:] = np.clip(win * (1 - m) + layer * m + 0.5, 0, 255).astype(np.uint8)


def render_frame(p: Portrait, lm: np.ndarray, ring: np.ndarray, eye_shift: np.ndarray | None = None) -> np.ndarray:
    """Warp the portrait so its landmarks land on ``lm`` (478×3) and its ring on ``ring``; S×S×3 uint8.

    ``eye_shift`` (2×2, pixels; from :func:`pose_landmarks`) slides each eyeball's texture rigidly inside
    its eye opening (gaze); ``lm``'s iris points already include it.
    """
    size = p.image.shape[0]
    eye_shift = np.zeros((2, 2)) if eye_shift is None else np.asarray(eye_shift, np.float64)
    warp_lm = lm[:, :2].copy()
    for e, (_, _, iris, _) in enumerate(EYES):
        warp_lm[iris] -= eye_shift[e]  # the eye interior warps with the lids; the iris slides on top
    src = np.concatenate([p.landmarks[:, :2], p.ring_src[:, :2], p.border])
    dst = np.concatenate([warp_lm, ring[:, :2], p.border])
    order = np.argsort(-lm[p.face_tris, 2].mean(1), kind="stable")
    tris = np.concatenate([p.outer_tris, p.face_tris[order]])
    tri_eye = np.concatenate([np.full(len(p.outer_tris), -1, np.int32), p.face_eye[order]])
    tid = _triangle_map(dst, tris, size)
    aff = _affines(src, dst, tris)
    # Per-pixel source coordinates; uncovered pixels (tid = -1) pick the appended identity map.
    coef = np.concatenate([aff.reshape(-1, 6), [[1, 0, 0, 0, 1, 0]]]).astype(np.float32)
    coef[:, [2, 5]] -= 0.5  # back to cv2's pixel-index coordinates
    xs, ys = _pixel_centres(size)
    c = np.take(coef, tid, axis=0, mode="wrap")  # S×S×6; -1 wraps to the identity row
    map_x = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    map_y = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    img = cv2.remap(p.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    eye = np.take(np.append(tri_eye, -1), tid, mode="wrap")
    if np.any(eye_shift) and (eye >= 0).any():
        ys_, xs_ = np.nonzero(eye >= 0)
        shift = eye_shift[eye[ys_, xs_]].astype(np.float32)
        mx, my = (map_x[ys_, xs_] - shift[:, 0])[None], (map_y[ys_, xs_] - shift[:, 1])[None]
        ball = cv2.remap(p.eye_texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        img[ys_, xs_] = ball[0]
    _paint_mouth(img, lm, float(np.linalg.norm(lm[EYE_CORNERS[1], :2] - lm[EYE_CORNERS[0], :2])))
    return img


@functools.cache
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[:size, :size].astype(np.float32) + 0.5  # continuous coordinates of pixel centres
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


# --------------------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class SynthClip:
    """One SynthTalk clip: frames, audio and per-frame ground truth."""

    frames: np.ndarray
    """T×S×S×3 uint8."""
    audio: np.ndarray
    """float32 mono at 16 kHz, exactly T / fps seconds long."""
    fps: float
    ground_truth: dict[str, np.ndarray]
    """Per-frame arrays (first axis T); see :func:`synthesize_clip`."""
    meta: dict
    """JSON-serialisable: text, voice, seed, portrait, phoneme and word timings, emotion level, config."""


_DEFAULT_VOICE = Voice()


def _head_distance(landmarks_Tx478x3: np.ndarray, size: int) -> np.ndarray:
    from vasajax.facetrack.labels import head_distance

    whole = (size / 2, size / 2, size)  # the frame is the crop
    return np.array([head_distance(lm, whole) for lm in landmarks_Tx478x3], np.float32)


def _portrait_pose(matrix: np.ndarray) -> list[float]:
    from vasajax.facetrack.labels import pose_from_matrix

    return [round(float(x), 5) for x in pose_from_matrix(matrix)]


def _cut_speech(speech: Speech, max_s: float) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    phon = [(p.name, p.start_s, p.end_s) for p in speech.phonemes]
    if speech.duration_s <= max_s:
        return speech.audio_16k, phon
    pauses = [a for n, a, _ in phon if n == PAUSE and 0.5 * max_s < a <= max_s]
    cut = pauses[-1] if pauses else max_s
    phon = [(n, a, min(b, cut)) for n, a, b in phon if a < cut]
    return speech.audio_16k[: int(cut * SAMPLE_RATE)], phon


def synthesize_clip(
    portrait: Portrait | np.ndarray,
    sentence: str,
    voice: Voice = _DEFAULT_VOICE,
    seed: int = 0,
    cfg: SynthConfig = SynthConfig(),
) -> SynthClip:
    """Speak ``sentence`` with ``voice`` and animate ``portrait`` in sync; deterministic given ``seed``.

    Ground truth (float32 unless noted; angles in radians):
      ``pose`` T×6 [yaw, pitch, roll, tx, ty, log scale] of the head relative to the portrait (tx, ty as
      fractions of S; angle conventions of ``facetrack.pose_from_matrix``: +yaw turns the nose to image
      right, +pitch tilts it down, +roll is counter-clockwise in the image); ``landmarks``
      T×478×3 (rendered, S pixels); ``mouth_open`` T (inner-lip gap 13/14 over eye-corner distance 33/263,
      measured on the rendered landmarks); ``jaw``/``lip_spread``/``lip_round`` T (viseme drivers);
      ``blink`` T (0 open … 1 closed); ``gaze`` T×2 [θ, φ] of the eyes relative to the head (θ > 0 looks
      to the image right, φ > 0 up: ``facetrack``'s ``gaze_head``);
      ``emotion`` T (smile intensity 0…1); ``distance`` T (``facetrack.head_distance``: 3D eye distance
      over S); ``speaking`` T (1 inside a phoneme); ``phoneme`` T int32
      (index into ``meta['phoneme_names']``, -1 outside speech); ``viseme`` T int32 (class index into
      ``visemes.VISEME_NAMES``).
    """
    if not isinstance(portrait, Portrait):
        portrait = prepare_portrait(np.asarray(portrait), cfg)
    if portrait.image.shape[0] != cfg.size:
        raise UserError(f"portrait was prepared at {portrait.image.shape[0]}² but cfg.size={cfg.size}; re-prepare it")
    rng = np.random.default_rng([seed, 0x5157])
    speech = synthesize_speech(sentence, voice, seed=seed)
    audio, phon = _cut_speech(speech, cfg.max_speech_s)
    phon = [(n, a + cfg.lead_in_s, b + cfg.lead_in_s) for n, a, b in phon]
    total_s = cfg.lead_in_s + len(audio) / SAMPLE_RATE + cfg.tail_s
    n_frames = int(np.ceil(total_s * cfg.fps))
    n_samples = int(round(n_frames * SAMPLE_RATE / cfg.fps))
    wav = np.zeros(n_samples, np.float32)
    start = int(round(cfg.lead_in_s * SAMPLE_RATE))
    wav[start : start + len(audio)] = audio[: n_samples - start]

    motion = sample_motion(phon, n_frames, cfg, rng)
    frames = np.empty((n_frames, cfg.size, cfg.size, 3), np.uint8)
    lms = np.empty((n_frames, 478, 3), np.float32)
    keys = ("yaw", "pitch", "roll", "tx", "ty", "scale", "jaw", "spread", "round", "blink", "gaze_yaw",
            "gaze_pitch", "smile")  # fmt: skip
    for i in range(n_frames):
        lm, ring, eye_shift = pose_landmarks(portrait, {k: float(motion[k][i]) for k in keys}, cfg)
        frames[i] = render_frame(portrait, lm, ring, eye_shift)
        lms[i] = lm

    names = sorted({n for n, _, _ in phon if n != PAUSE})
    t = np.arange(n_frames) / cfg.fps
    phoneme = np.full(n_frames, -1, np.int32)
    for n, a, b in phon:
        if n != PAUSE:
            phoneme[(t >= a) & (t < b)] = names.index(n)
    f32 = np.float32
    gt = {
        "pose": np.stack(
            [
                motion["yaw"],
                motion["pitch"],
                motion["roll"],
                motion["tx"],
                motion["ty"],
                np.log(motion["scale"]),
            ],
            -1,
        ).astype(f32),  # fmt: skip
        "landmarks": lms,
        "mouth_open": mouth_opening(lms).astype(f32),
        "jaw": motion["jaw"],
        "lip_spread": motion["spread"],
        "lip_round": motion["round"],
        "blink": motion["blink"],
        "gaze": np.stack([motion["gaze_yaw"], motion["gaze_pitch"]], -1),
        "emotion": motion["smile"],
        "distance": _head_distance(lms, cfg.size),
        "speaking": motion["speaking"],
        "phoneme": phoneme,
        "viseme": motion["viseme"],
    }
    meta = {
        "text": speech.text,
        "voice": dataclasses.asdict(voice),
        "seed": int(seed),
        "portrait": portrait.name,
        "portrait_pose": None if portrait.matrix is None else _portrait_pose(portrait.matrix),
        "fps": cfg.fps,
        "size": cfg.size,
        "num_frames": n_frames,
        "sample_rate": SAMPLE_RATE,
        "speech_start_s": cfg.lead_in_s,
        "phonemes": [{"name": n, "start_s": round(a, 4), "end_s": round(b, 4)} for n, a, b in phon],
        "phoneme_names": names,
        "words": [{"text": w, "start_s": round(a + cfg.lead_in_s, 4)} for w, a in speech.words],
        "emotion_level": float(np.mean(motion["smile"])),
        "viseme_names": list(visemes.VISEME_NAMES),
        "config": dataclasses.asdict(cfg),
    }
    return SynthClip(frames=frames, audio=wav, fps=cfg.fps, ground_truth=gt, meta=meta)


def write_clip(clip: SynthClip, out_dir: str | os.PathLike, name: str, *, crf: int = 20) -> dict[str, pathlib.Path]:
    """Write ``name``.mp4 (h264 yuv420p + AAC), .wav (16 kHz), .npz (ground truth) and .json (meta)."""
    import imageio_ffmpeg
    import soundfile

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{name}.{k}" for k in ("mp4", "wav", "npz", "json")}
    soundfile.write(paths["wav"], clip.audio, SAMPLE_RATE, subtype="PCM_16")
    t, h, w, _ = clip.frames.shape
    writer = imageio_ffmpeg.write_frames(
        str(paths["mp4"]), (w, h), fps=clip.fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
        macro_block_size=1,
        ffmpeg_log_level="error", audio_path=str(paths["wav"]), audio_codec="aac",
        output_params=["-crf", str(crf), "-preset", "veryfast", "-movflags", "+faststart"],
    )  # fmt: skip
    writer.send(None)
    for frame in clip.frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    np.savez_compressed(paths["npz"], **clip.ground_truth)
    paths["json"].write_text(json.dumps(clip.meta, indent=1, ensure_ascii=False))
    return paths


# --------------------------------------------------------------------------------------------------------
# Inputs: sentences and portraits
# --------------------------------------------------------------------------------------------------------

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"
HELDOUT_MARKER = "# HELD-OUT:"


def load_sentences(split: str = "train", path: str | os.PathLike | None = None) -> list[str]:
    """Sentences from ``assets/sentences.txt`` (or ``path``): "train" (1–180), "heldout" (181–200) or "all".

    The held-out split starts after the line beginning with ``# HELD-OUT:``; use it only for evaluation.
    """
    if split not in ("train", "heldout", "all"):
        raise UserError(f"sentence split must be 'train', 'heldout' or 'all', got {split!r}")
    lines = pathlib.Path(path or ASSETS / "sentences.txt").read_text(encoding="utf-8").splitlines()
    train, heldout, target = [], [], None
    target = train
    for line in lines:
        if line.startswith(HELDOUT_MARKER):
            target = heldout
        elif line.strip() and not line.startswith("#"):
            target.append(line.strip())
    out = {"train": train, "heldout": heldout, "all": train + heldout}[split]
    if not out:
        raise UserError(f"no {split!r} sentences in {path or ASSETS / 'sentences.txt'}; add one sentence per line")
    return out


def load_portraits(folder: str | os.PathLike | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) for every .png/.jpg/.jpeg/.webp in ``folder``, or the bundled public-domain ones."""
    from vasajax.image import PORTRAITS, load_image

    if folder is None:
        return [(name, load_image(path)) for name, path in PORTRAITS.items()]
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise UserError(f"portrait folder {root} does not exist; pass a folder of face photos (.jpg/.png)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise UserError(f"no .jpg/.png images in {root}; add portrait photos with one clear face each")
    return [(p.stem, load_image(p)) for p in files]


def prepare_portraits(
    images: Sequence[tuple[str, np.ndarray]], cfg: SynthConfig, *, skip_bad: bool = True
) -> list[Portrait]:
    """Track each portrait's face once (one landmarker) and rig it; photos without a face are skipped."""
    import warnings

    from vasajax.facetrack.tracker import FaceTracker, track_image

    out = []
    with FaceTracker(mode="image", max_faces=1) as tracker:
        for name, image in images:
            try:
                obs = track_image(image, tracker=tracker)
                out.append(prepare_portrait(image, cfg, name=name, landmarks=obs.landmarks, matrix=obs.matrix))
            except UserError as e:
                if not skip_bad:
                    raise
                warnings.warn(f"skipping portrait {name}: {e}", stacklevel=2)
    if not out:
        raise UserError("none of the portraits has a usable face; use photos with one clear, frontal face")
    return out


# --------------------------------------------------------------------------------------------------------
# Command line: vasajax synth --out DIR --num-clips N [--portraits DIR] [--size S] [--seed N]
# --------------------------------------------------------------------------------------------------------


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``vasajax synth``: write N SynthTalk clips (mp4 + wav + npz + json) and an ``index.json``; with
    ``--shards``, clip-record shards + manifests for train and held-out splits (``synth_shards.cli``)."""
    import tqdm

    ap = argparse.ArgumentParser(prog="vasajax synth", description="Make SynthTalk clips (offline).")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--num-clips", type=int, default=10, help="number of clips (default 10)")
    ap.add_argument("--portraits", default=None, help="folder of portrait photos (default: the bundled ones)")
    ap.add_argument("--size", type=int, default=256, help="frame side S in pixels (default 256)")
    ap.add_argument("--seed", type=int, default=0, help="base seed; clip i uses (seed, i)")
    ap.add_argument("--split", default=None, choices=("train", "heldout", "all", "both"),
                    help="sentence split (default: train; with --shards: both)")  # fmt: skip
    ap.add_argument("--sentences", default=None, help="text file with one sentence per line")
    sh = ap.add_argument_group("clip shards (--shards; see vasajax.data.synth_shards)")
    sh.add_argument("--shards", action="store_true", help="write clip-record shards + manifests, not mp4s")
    sh.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    sh.add_argument("--num-heldout", type=int, default=None, help="held-out clips (default max(4, N/10))")
    sh.add_argument("--heldout-voice", default="en-gb-scotland+f5", help="LANGUAGE+VARIANT kept out of train, or none")
    sh.add_argument("--heldout-portrait", default=None, help="portrait name kept out of train (default none)")
    sh.add_argument("--clip-frames", type=int, default=None, help="cut utterances into T-frame records")
    sh.add_argument("--codec", default="jpeg", choices=("jpeg", "png", "raw"), help="frame codec (default jpeg)")
    sh.add_argument("--clips-per-shard", type=int, default=25, help="clips per resumable work unit")
    args = ap.parse_args(argv)
    if args.num_clips < 1:
        raise UserError(f"--num-clips must be at least 1, got {args.num_clips}")
    if args.size < 64 or args.size % 2:
        raise UserError(f"--size must be an even number ≥ 64, got {args.size}")
    if args.shards:
        from vasajax.data import synth_shards

        return synth_shards.cli(args)
    if args.split == "both":
        raise UserError("--split both needs --shards; without it, pick train, heldout or all")
    cfg = dataclasses.replace(SynthConfig(), size=args.size)
    sentences = load_sentences(args.split or "train", args.sentences)
    portraits = prepare_portraits(load_portraits(args.portraits), cfg)
    index = []
    for i in tqdm.trange(args.num_clips, desc="SynthTalk", unit="clip", file=sys.stderr):
        rng = np.random.default_rng([args.seed, i])
        portrait = portraits[int(rng.integers(len(portraits)))]
        sentence = sentences[int(rng.integers(len(sentences)))]
        voice = Voice.random(rng)
        clip = synthesize_clip(portrait, sentence, voice, seed=int(rng.integers(2**31)), cfg=cfg)
        name = f"clip{i:05d}"
        write_clip(clip, args.out, name, crf=cfg.crf)
        index.append({"name": name, "portrait": portrait.name, "text": sentence,
                      "num_frames": int(len(clip.frames))})  # fmt: skip
    (pathlib.Path(args.out) / "index.json").write_text(json.dumps({"clips": index, "fps": cfg.fps}, indent=1))
    return 0


if __name__ == "__main__":
    from vasajax.cli import run

    raise SystemExit(run(cli_main))
