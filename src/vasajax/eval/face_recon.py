"""Stage-1 quality on held-out clips: self-reenactment PSNR against a copy-the-source baseline, and a
cross-identity reenactment grid (VASA-1 §3.1; MegaPortraits' self/cross reenactment protocol).

    vasajax face-recon --face-run runs/face --data HELDOUT_SHARDS --out docs/cross_identity.png

(the command is ``vasajax.train.face_eval``: it loads a training run or an export and calls these functions on
the model; this module takes any model with ``reenact``.)

Self-reenactment: for each clip, frame 0 is the source and ``num_drivers`` evenly spaced later frames are the
drivers; the model must turn the source into each driver (new head pose, mouth, eyes). The baseline copies the
source unchanged, so beating it means the model moves the face toward the driver rather than just repainting
the photo. Cross-identity: every clip's first frame (one per identity) driven by frames of the other clips;
there is no ground truth for it, so it is a picture (the diagonal is self-reenactment).
"""

from __future__ import annotations

from typing import Any

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax.data import clips
from vasajax.data.loader import mouth_box
from vasajax.errors import UserError
from vasajax.eval.lipsync import mouth_opening
from vasajax.face.losses import box_mask
from vasajax.facetrack.tracker import FaceTracker


def _clips(data, max_clips: int) -> list[Any]:

    manifest = clips.read_manifest(data)
    if manifest.get("kind") != "clip":
        raise UserError(f"{data} holds {manifest.get('kind')} records; pass clip shards")
    out = []
    for rec in clips.read_records(manifest, data):
        out.append(rec)
        if len(out) >= max_clips:
            break
    return out


def _resize(frames_BxSxSx3: np.ndarray, size: int) -> np.ndarray:
    if frames_BxSxSx3.shape[1] == size:
        return frames_BxSxSx3
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames_BxSxSx3])


def face_sharpness(images_BxSxSx3: np.ndarray, crop: float = 0.6) -> list[float]:
    """Variance of the Laplacian of the grey central ``crop`` of each image (pixel values 0–255): a blur measure
    (a sharp 256² face crop scores in the hundreds, a blurred one in the tens)."""
    out = []
    for img in np.asarray(images_BxSxSx3, np.float64):
        s = img.shape[0]
        a, b = int(s * (1 - crop) / 2), int(s * (1 + crop) / 2)
        grey = img[a:b, a:b].mean(axis=-1) * (255.0 if img.max() <= 1.0 else 1.0)
        out.append(float(cv2.Laplacian(grey, cv2.CV_64F).var()))
    return out


def mouth_follow(outputs_NxSxSx3: np.ndarray, drivers_NxSxSx3: np.ndarray) -> dict[str, float]:
    """Does the rendered mouth open where the driver's does? MediaPipe's mouth opening (inner-lip gap over the
    eye-corner distance, :func:`vasajax.eval.lipsync.mouth_opening`) of each output and each driver (0–255
    images): Pearson r over the pairs, mean absolute difference, and the spread (std) of each. PSNR hardly sees
    the mouth (≈3 % of the crop); this does: a renderer that ignores the dynamics code scores r ≈ 0 and a
    small rendered std, whatever its PSNR. Pairs where either face is not found are skipped (``mouth_pairs``)."""

    def opening(images):
        out = []
        with FaceTracker(max_faces=1) as ft:
            for img in images:
                faces = ft.detect(np.clip(np.asarray(img), 0, 255).round().astype(np.uint8))
                out.append(float(mouth_opening(faces[0].landmarks[None])[0]) if faces else np.nan)
        return np.asarray(out)

    o, d = opening(outputs_NxSxSx3), opening(drivers_NxSxSx3)
    ok = np.isfinite(o) & np.isfinite(d)
    o, d = o[ok], d[ok]
    r = float(np.corrcoef(o, d)[0, 1]) if len(o) >= 3 and o.std() > 1e-9 and d.std() > 1e-9 else float("nan")
    return {
        "mouth_pairs": int(ok.sum()),
        "mouth_open_r": r,
        "mouth_open_mae": float(np.abs(o - d).mean()) if len(o) else float("nan"),
        "mouth_open_std_model": float(o.std()) if len(o) else float("nan"),
        "mouth_open_std_truth": float(d.std()) if len(d) else float("nan"),
    }


def border_share(error_map_SxS: np.ndarray, centre: float = 0.6) -> float:
    """Fraction of an error map's total outside its central ``centre``-wide square (background, hair, the crop's
    edges; the face sits in the centre of a tracker crop)."""
    e = np.asarray(error_map_SxS, np.float64)
    s = e.shape[0]
    m = int(round(s * (1 - centre) / 2))
    return float(1.0 - e[m : s - m, m : s - m].sum() / max(e.sum(), 1e-30))


def self_reenactment(
    model, data, *, max_clips: int = 8, num_drivers: int = 4, track_mouth: bool = True, error_map: bool = False
) -> dict[str, Any]:
    """Mean PSNR (dB) of ``model.reenact(source, driver)`` vs the driver, and of the copy baseline; also inside
    the driver's mouth box (``loader.mouth_box`` of the tracker's lip landmarks) when the records carry them, the
    face sharpness (:func:`face_sharpness`) of the outputs and of the true frames, and (``track_mouth``) whether
    the rendered mouth follows the driver's (:func:`mouth_follow`).

    ``error_share_border``: the share of the squared error outside the crop's central 60 % (:func:`border_share`),
    for the model and for the copy baseline — where the error is, in one number. ``error_map``: the result also
    holds ``"error_map"``, the per-pixel mean squared error ``S×S`` over all pairs (an array, not JSON)."""
    size = model.cfg.image_size
    reenact = nnx.jit(lambda m, s, d: m.reenact(s, d))
    mse_o, mse_c, mouth_o, mouth_c, sharp_o, sharp_t = [], [], [], [], [], []
    outs_u8, drvs_u8 = [], []
    map_o, map_c = np.zeros((size, size)), np.zeros((size, size))
    for rec in _clips(data, max_clips):
        frames = _resize(rec.frames_TxSxSx3, size)
        idx = np.linspace(1, len(frames) - 1, num_drivers).round().astype(int)
        src = np.repeat(frames[:1], num_drivers, axis=0)
        drv = frames[idx]
        out = reenact(model, jnp.asarray(src, jnp.float32) / 255.0, jnp.asarray(drv, jnp.float32) / 255.0)
        out = np.asarray(jax.device_get(out), np.float64)
        target = drv / 255.0
        se_o, se_c = (out - target) ** 2, (src / 255.0 - target) ** 2  # squared errors, model and copy
        mse_o.append(np.mean(se_o))
        mse_c.append(np.mean(se_c))
        map_o += se_o.mean(-1).sum(0)
        map_c += se_c.mean(-1).sum(0)
        if track_mouth:
            outs_u8.append(out * 255.0)
            drvs_u8.append(drv)
        sharp_o.extend(face_sharpness(out))
        sharp_t.extend(face_sharpness(target))
        landmarks = rec.ground_truth.get("landmarks_Tx478x3")
        if landmarks is not None:
            mask = np.asarray(box_mask(jnp.asarray(mouth_box(np.asarray(landmarks)[idx])), size, size), np.float64)
            area = np.maximum(mask.sum(axis=(1, 2, 3)) * 3, 1.0)
            mouth_o.extend((se_o * mask).sum(axis=(1, 2, 3)) / area)
            mouth_c.extend((se_c * mask).sum(axis=(1, 2, 3)) / area)
    mse_o, mse_c = np.maximum(mse_o, 1e-10), np.maximum(mse_c, 1e-10)  # PSNR per clip, as train.face.psnr
    res = {
        "clips": len(mse_o),
        "pairs": len(mse_o) * num_drivers,
        "psnr_model_db": float(np.mean(-10 * np.log10(mse_o))),
        "psnr_copy_source_db": float(np.mean(-10 * np.log10(mse_c))),
        "psnr_model_pooled_db": float(-10 * np.log10(np.mean(mse_o))),
        "psnr_copy_pooled_db": float(-10 * np.log10(np.mean(mse_c))),
        "sharpness_model": float(np.mean(sharp_o)),
        "sharpness_truth": float(np.mean(sharp_t)),
        "error_share_border": border_share(map_o),
        "error_share_border_copy": border_share(map_c),
    }
    if error_map:
        res["error_map"] = map_o / (len(mse_o) * num_drivers)
    if mouth_o:
        mouth_o, mouth_c = np.maximum(mouth_o, 1e-10), np.maximum(mouth_c, 1e-10)
        res["psnr_mouth_model_db"] = float(np.mean(-10 * np.log10(mouth_o)))
        res["psnr_mouth_copy_db"] = float(np.mean(-10 * np.log10(mouth_c)))
    if track_mouth and outs_u8:
        res.update(mouth_follow(np.concatenate(outs_u8), np.concatenate(drvs_u8)))
    return res


def save_error_map(error_map_SxS: np.ndarray, path, vmax: float | None = None) -> None:
    """An error map as a PNG: root mean squared error per pixel, white at ``vmax`` (default: the map's max; give
    two maps the same ``vmax`` to compare them)."""
    from PIL import Image

    rmse = np.sqrt(np.asarray(error_map_SxS, np.float64))
    top = float(np.sqrt(vmax)) if vmax is not None else float(rmse.max())
    Image.fromarray((np.clip(rmse / max(top, 1e-12), 0, 1) * 255).round().astype(np.uint8)).save(path)


def cross_identity_grid(model, data, *, max_clips: int = 8, num_drivers: int = 5, relative: bool = False) -> np.ndarray:
    """An image: row 0 = drivers; then one row per identity (its first source frame, then that source driven by
    each driver). Sources: the first clip of each identity; drivers: frames spread over the other clips.
    ``relative``: drive with each driver's change from its clip's first frame (``reenact(..., driver_ref)``)."""
    size = model.cfg.image_size
    recs = _clips(data, max_clips)
    sources, seen = [], set()
    for rec in recs:
        if rec.identity not in seen:
            seen.add(rec.identity)
            sources.append(_resize(rec.frames_TxSxSx3[:1], size)[0])
    drivers, refs = [], []
    for k in range(num_drivers):
        rec = recs[k % len(recs)]
        t = int(round((k + 1) / (num_drivers + 1) * (len(rec.frames_TxSxSx3) - 1)))
        drivers.append(_resize(rec.frames_TxSxSx3[t : t + 1], size)[0])
        refs.append(_resize(rec.frames_TxSxSx3[:1], size)[0])
    drv = jnp.asarray(np.stack(drivers), jnp.float32) / 255.0
    if relative:
        ref = jnp.asarray(np.stack(refs), jnp.float32) / 255.0
        reenact = nnx.jit(lambda m, s, d: m.reenact(s, d, ref))
    else:
        reenact = nnx.jit(lambda m, s, d: m.reenact(s, d))
    blank = np.full((size, size, 3), 255, np.uint8)
    rows = [np.concatenate([blank, *drivers], axis=1)]
    for src in sources:
        s = jnp.broadcast_to(jnp.asarray(src, jnp.float32)[None] / 255.0, drv.shape)
        out = np.asarray(reenact(model, s, drv))
        out_u8 = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
        rows.append(np.concatenate([src, *out_u8], axis=1))
    return np.concatenate(rows, axis=0)
