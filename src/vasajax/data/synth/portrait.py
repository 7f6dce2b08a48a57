"""The portrait rig, computed once per portrait: the face crop, a face-local frame, deformation bases (mouth,
eyelids), control rings that carry hair and neck, and the triangulation the renderer warps along.

:func:`prepare_portrait` rigs one photo (tracking its face unless landmarks are given); :func:`prepare_portraits`
tracks a list of photos with one landmarker and skips those without a usable face.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Sequence

import cv2
import numpy as np
import scipy.ndimage
import scipy.spatial

from vasajax import modelfiles
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.curves import smoothstep
from vasajax.data.synth.landmarks import EYE_CORNERS, EYES, FACE_OVAL, LOWER_INNER, UPPER_INNER, UPPER_OUTER
from vasajax.errors import UserError
from vasajax.facetrack.crop import CropConfig, apply_crop, crop_params, image_to_crop_coords
from vasajax.facetrack.tracker import FaceTracker, track_image


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


def _crop(image: np.ndarray, landmarks: np.ndarray, size: int, crop_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The data-preparation face crop (``facetrack``), so SynthTalk frames are framed like real clips."""

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
    below = smoothstep(d, 0.0, 0.45)
    lateral = np.clip(1 - np.maximum(np.abs(u) - hw, 0) / 0.55, 0, 1)
    gate = np.where(np.abs(u) <= hw, (d > -1e-3).astype(float), smoothstep(d, -0.1, 0.05))
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


def prepare_portraits(
    images: Sequence[tuple[str, np.ndarray]], cfg: SynthConfig, *, skip_bad: bool = True
) -> list[Portrait]:
    """Track each portrait's face once (one landmarker) and rig it; photos without a face are skipped."""

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
