"""Latent and condition ablations: swap face factors, hold motion factors, measure what a condition changes.

VASA-1 §4.1 shows its latent space is disentangled by *swapping*: the same generated motion on different
faces (figure 4: identity vs. motion), generated poses with the dynamics held at their first frame and the
reverse with a pre-defined spinning pose (figure 5: pose vs. facial dynamics). §4.3 (table 5) ablates the
conditions by measuring, on the generated videos, what each control was asked to do: gaze error E_g, head
distance error E_d, ΔP, lip sync. This module holds the small pieces those experiments need, so notebooks
(``notebooks/04_latent_ablation``) and scripts call one function per idea:

* :func:`swap` / :func:`stack` / :func:`decode_batched` — a :class:`~vasajax.face.model.FaceLatent` with some
  factors taken from another face, many latents in one batch, decoded in fixed-size jitted calls;
* :func:`hold` / :func:`spin_pose` — motion sequences ``T×(6+dyn)`` with pose or dynamics frozen, or with a
  synthetic head turn;
* :func:`motion_effect` — how far a changed condition moves the generated motion (normalised RMS), the
  measure that works even before a video can be tracked;
* :func:`seam_jumps` — frame-to-frame change at the sliding-window seams vs. inside windows (§3.2's
  motivation for conditioning each window on the previous one);
* :func:`measure_video` — one row of a table-5 style ablation: the tracked-video metrics of
  ``eval.report.evaluate_video`` plus the measured main gaze / distance and the motion-latent ΔP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vasajax.errors import UserError
from vasajax.eval import pose, report
from vasajax.face.model import FaceLatent
from vasajax.pipeline import relative_pose_offset

FACTORS = ("appearance", "identity", "pose", "dyn")
"""The four factors of a ``FaceLatent`` (VASA-1 §3.1: V_app, z_id, z_pose, z_dyn)."""

FIELDS = {"appearance": ("appearance", "source", "source_grid", "source_points"), "identity": ("identity",),
          "pose": ("pose",), "dyn": ("dyn",)}  # fmt: skip
"""The ``FaceLatent`` fields of each factor: the pixel-warp decoder's source image and its points (and the landmark
flow's source face points) belong to the appearance (they are ``None`` for the pure volume decoder)."""


def _map_fields(fn):
    """``{field: fn(field, factor)}`` over every ``FaceLatent`` field."""
    return {field: fn(field, factor) for factor, fields in FIELDS.items() for field in fields}


def _check_factors(factors: Iterable[str]) -> tuple[str, ...]:
    out = tuple(factors)
    bad = [f for f in out if f not in FACTORS]
    if bad:
        raise UserError(f"unknown latent factor {bad[0]!r}; choose from {', '.join(FACTORS)}")
    return out


def swap(base, donor, factors: Iterable[str]):
    """``base`` (a ``FaceLatent``) with the named ``factors`` taken from ``donor`` (same batch size)."""

    take = _check_factors(factors)
    return FaceLatent(**_map_fields(lambda f, factor: getattr(donor if factor in take else base, f)))


def stack(latents: Sequence[Any]):
    """Concatenate ``FaceLatent``s along the batch axis (decode them in one call, one jit shape)."""
    import jax.numpy as jnp

    if not latents:
        raise UserError("stack needs at least one FaceLatent")

    def cat(f, _):
        parts = [getattr(lat, f) for lat in latents]
        return None if parts[0] is None else jnp.concatenate(parts, axis=0)

    return FaceLatent(**_map_fields(cat))


def with_motion(latent, motion_TxM: np.ndarray):
    """T latents: ``latent``'s appearance and identity (batch 1) with each frame's pose and dynamics."""
    import jax.numpy as jnp

    m = np.asarray(motion_TxM, np.float32)
    if m.ndim != 2 or m.shape[1] != latent.pose.shape[1] + latent.dyn.shape[1]:
        raise UserError(f"motion must be T×{latent.pose.shape[1] + latent.dyn.shape[1]} (pose + dyn), got {m.shape}")
    T = len(m)

    def rep(a):
        return None if a is None else jnp.broadcast_to(a[:1], (T, *a.shape[1:]))

    return FaceLatent(
        appearance=rep(latent.appearance), identity=rep(latent.identity),
        pose=jnp.asarray(m[:, :6]), dyn=jnp.asarray(m[:, 6:]),
        source=rep(latent.source), source_grid=rep(latent.source_grid), source_points=rep(latent.source_points),
    )  # fmt: skip


def retarget(
    motion_TxM: np.ndarray,
    portrait_pose_6: np.ndarray,
    motion_mean_M: np.ndarray,
    *,
    portrait_dyn=None,
    reference_dyn=None,
) -> np.ndarray:
    """Generated motion with its head pose moved around a portrait's own pose, as ``pipeline.Animator`` decodes
    it: ``pose = portrait_pose + (generated_pose − motion_mean[:6])``. Dynamics unchanged, or with
    ``portrait_dyn`` and ``reference_dyn`` *relative*: ``dyn = portrait_dyn + (generated_dyn − reference_dyn)``
    (``face.model.relative_motion``), for driving another face with motion generated from (primed with) the
    reference's: what the generated z_dyn says about the reference face's layout cancels out."""

    m = np.array(motion_TxM, np.float32)
    m[:, :6] += relative_pose_offset(portrait_pose_6, motion_mean_M)
    if (portrait_dyn is None) != (reference_dyn is None):
        raise ValueError("retarget: give both portrait_dyn and reference_dyn, or neither")
    if portrait_dyn is not None:
        shift = np.asarray(portrait_dyn, np.float32).reshape(-1) - np.asarray(reference_dyn, np.float32).reshape(-1)
        m[:, 6:] += shift
    return m


def decode_batched(decode, params, latent, batch: int = 6) -> np.ndarray:
    """Frames ``N×S×S×3`` (float, [0, 1]) of a batch of N latents (e.g. from :func:`stack`).

    ``decode(params, appearance, identity, pose, dyn[, source, source_grid, source_points])`` is a jitted decode
    (``face.model.jitted``); it is called in fixed batches of ``batch`` latents (the last one padded by
    repetition), so any N compiles once.
    """
    import jax.numpy as jnp

    n_all = latent.pose.shape[0]
    out = []
    for s in range(0, n_all, batch):
        n = min(batch, n_all - s)
        idx = jnp.asarray(np.minimum(np.arange(s, s + batch), s + n - 1))
        lat = FaceLatent(
            **_map_fields(lambda f, _, idx=idx: None if getattr(latent, f) is None else getattr(latent, f)[idx])
        )
        photo = () if lat.source is None else (lat.source, lat.source_grid, lat.source_points)  # pixel warp only
        frames = decode(params, lat.appearance, lat.identity, lat.pose, lat.dyn, *photo)
        out.append(np.asarray(frames)[:n])
    return np.concatenate(out) if out else np.zeros((0, 1, 1, 3), np.float32)


def decode_motion(decode, params, latent, motion_TxM: np.ndarray, batch: int = 6) -> np.ndarray:
    """Frames ``T×S×S×3`` (float, [0, 1]) of ``latent``'s face (batch 1) driven by ``motion_TxM``, decoded in
    fixed batches (:func:`decode_batched`)."""
    return decode_batched(decode, params, with_motion(latent, motion_TxM), batch)


def hold(motion_TxM: np.ndarray, factor: str, frame: int = 0, value: np.ndarray | None = None) -> np.ndarray:
    """A copy of the motion with ``factor`` ("pose": the first 6 dims, or "dyn": the rest) frozen: at ``value``
    when given (e.g. the portrait's own pose or dynamics), else at frame ``frame`` of the motion."""
    m = np.array(motion_TxM, np.float32)
    if factor not in ("pose", "dyn"):
        raise UserError(f"hold: factor must be 'pose' or 'dyn', not {factor!r}")
    cols = slice(0, 6) if factor == "pose" else slice(6, None)
    m[:, cols] = m[frame, cols] if value is None else np.asarray(value, np.float32).reshape(-1)
    return m


def spin_pose(num_frames: int, pose_6: np.ndarray, *, yaw_deg: float = 25.0, pitch_deg: float = 0.0) -> np.ndarray:
    """A pre-defined head turn (VASA-1 figure 5, bottom row): ``pose_6`` with yaw swept once through
    ±``yaw_deg`` (a full sine period over ``num_frames``) and pitch by ±``pitch_deg`` (cosine); T×6."""
    p = np.tile(np.asarray(pose_6, np.float32).reshape(1, 6), (num_frames, 1))
    u = np.arange(num_frames) / max(num_frames, 1) * 2 * np.pi
    p[:, 0] += np.radians(yaw_deg) * np.sin(u)
    p[:, 1] += np.radians(pitch_deg) * (1 - np.cos(u)) / 2
    return p


def motion_effect(reference_TxM: np.ndarray, changed_TxM: np.ndarray, std_M: np.ndarray | None = None) -> float:
    """RMS difference of two motion sequences of equal length, in units of the per-dimension ``std_M`` (the
    DiT's normalisation statistics; None: raw units). 0: the change did nothing."""
    a, b = np.asarray(reference_TxM, np.float64), np.asarray(changed_TxM, np.float64)
    if a.shape != b.shape:
        raise UserError(f"motion_effect needs sequences of the same shape, got {a.shape} and {b.shape}")
    s = 1.0 if std_M is None else np.asarray(std_M, np.float64).reshape(1, -1)
    return float(np.sqrt(np.mean(np.square((b - a) / s))))


def seam_jumps(motion_TxM: np.ndarray, window: int, std_M: np.ndarray | None = None) -> dict[str, float]:
    """Frame-to-frame change at sliding-window seams vs. inside windows.

    The change between frames t and t+1 is the RMS over dimensions of ``(x_{t+1} − x_t) / std``; a *seam*
    pair is the last frame of window i and the first of window i+1 (t + 1 a multiple of ``window``).
    Returns ``seam`` and ``inside`` (mean change), ``ratio`` = seam / inside (≈ 1: seams are invisible) and
    the counts of pairs. NaN where a clip has no seam (T ≤ window).
    """
    x = np.asarray(motion_TxM, np.float64)
    if x.ndim != 2 or window < 1:
        raise UserError(f"seam_jumps needs T×M motion and window ≥ 1, got {x.shape} and {window}")
    s = 1.0 if std_M is None else np.asarray(std_M, np.float64).reshape(1, -1)
    d = np.sqrt(np.mean(np.square(np.diff(x / s, axis=0)), axis=1))  # (T−1,)
    is_seam = (np.arange(1, len(x)) % window) == 0
    seam = float(d[is_seam].mean()) if is_seam.any() else float("nan")
    inside = float(d[~is_seam].mean()) if (~is_seam).any() else float("nan")
    ratio = seam / inside if inside > 0 else float("nan")
    return {"seam": seam, "inside": inside, "ratio": ratio, "seams": int(is_seam.sum()), "pairs": int(len(d))}


def seam_frames(num_frames: int, window: int) -> list[int]:
    """Indices of the first frame of every window after the first (where a plot should mark a seam)."""
    return list(range(window, num_frames, window))


def measure_video(
    frames_TxHxWx3: np.ndarray,
    wave_16k: np.ndarray,
    *,
    motion_TxM: np.ndarray | None = None,
    conditions: Mapping[str, Any] | None = None,
    fps: float = 25.0,
) -> dict[str, float | None]:
    """One row of a condition ablation (VASA-1 table 5) for one generated video.

    Tracks the frames (MediaPipe, ``eval.report.track_video``) and returns ``evaluate_video``'s columns
    (``face_frames``, ``av_corr``, ``delta_p``, ``gaze_err`` E_g, ``dist_err`` E_d, ...) for the requested
    ``conditions`` (``gaze`` (θ, φ) radians, ``distance``), plus ``gaze_theta_deg`` / ``gaze_phi_deg`` (the
    measured main gaze), ``distance`` (measured mean head distance) and, when ``motion_TxM`` is given,
    ``delta_p_latent`` (ΔP of the generated pose latent itself, which needs no tracking). Columns that need a
    face are None when the tracker finds none (e.g. the noise frames of an untrained model).
    """

    track = report.track_video(frames_TxHxWx3, fps=fps)
    row = report.evaluate_video(track, wave_16k, fps=fps, conditions=conditions)
    g = pose.main_gaze(track.gaze)
    dist = float(np.nanmean(track.distance)) if track.valid.any() else float("nan")
    extra = {"gaze_theta_deg": float(np.degrees(g[0])), "gaze_phi_deg": float(np.degrees(g[1])), "distance": dist}
    if motion_TxM is not None:
        extra["delta_p_latent"] = pose.delta_p(np.asarray(motion_TxM)[:, :3])
    row.update({k: (v if np.isfinite(v) else None) for k, v in extra.items()})
    return row


def run_ablation(
    animator,
    portrait,
    wave_16k: np.ndarray,
    settings: Mapping[str, Mapping[str, Any]],
    *,
    reference: str | None = None,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Animate ``portrait`` once per setting and measure each video (VASA-1 table 5, one row per setting).

    ``settings``: name → ``Animator.animate`` controls (``gaze``, ``distance``, ``emotion``, ``cfg_audio``,
    ``cfg_gaze``, ``steps``); every setting uses the same ``seed``, so rows differ only by their controls.
    Each row is :func:`measure_video` against the requested gaze (default (0, 0)) and distance (default, as in
    ``Animator``: the export's recorded distance, else the portrait's measured one), plus ``effect``:
    :func:`motion_effect` of its motion against the ``reference`` setting's (default: the first), in units of
    the DiT's motion std. Returns ``(rows, videos)`` with the ``pipeline.Video`` of every setting by name.
    """
    if not settings:
        raise UserError("run_ablation needs at least one setting")
    names = list(settings)
    reference = names[0] if reference is None else reference
    if reference not in settings:
        raise UserError(f"reference setting {reference!r} is not one of {names}")
    order = [reference] + [n for n in names if n != reference]
    std = np.asarray(animator.motion_model.motion_std.get_value(), np.float32)
    rows, videos = {}, {}
    for name in order:
        controls = dict(settings[name])
        video = animator.animate(portrait, wave_16k, seed=seed, **controls)
        requested = {"gaze": controls.get("gaze", (0.0, 0.0))}
        dist = controls.get("distance", "auto")
        if dist == "auto":  # what Animator uses: the export's recorded default, else the portrait's own
            dist = animator.export.conditions.get("distance", portrait.distance)
        if dist is not None:
            requested["distance"] = float(dist)
        row = {"setting": name, **measure_video(video.frames, wave_16k, motion_TxM=video.motion, conditions=requested,
                                                fps=video.fps)}  # fmt: skip
        row["effect"] = motion_effect(videos[reference].motion, video.motion, std) if videos else 0.0
        rows[name], videos[name] = row, video
    return [rows[n] for n in names], {n: videos[n] for n in names}
