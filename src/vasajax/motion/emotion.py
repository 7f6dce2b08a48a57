"""The emotion condition e of VASA-1 §3.2 from what a user types: a name, blendshape pairs, or a vector.

Forms: ``"neutral"`` or None → ∅ (the learned null, the model's average expression); a preset name (the export's
``conditions["emotions"]`` first, then ``BLENDSHAPE_EMOTIONS`` for 52-blendshape models); ``"name=value,..."`` over
MediaPipe's 52 blendshape names (``facetrack.landmarks.BLENDSHAPE_NAMES``); ``"v1,v2,..."`` or an array of the model's
``emotion_dim`` values.
"""

from __future__ import annotations

import numpy as np

from vasajax.errors import UserError
from vasajax.facetrack.landmarks import BLENDSHAPE_NAMES

BLENDSHAPE_EMOTIONS: dict[str, dict[str, float]] = {
    "happy": {"mouthSmileLeft": 0.6, "mouthSmileRight": 0.6, "cheekSquintLeft": 0.3, "cheekSquintRight": 0.3},
    "sad": {"mouthFrownLeft": 0.5, "mouthFrownRight": 0.5, "browInnerUp": 0.5, "mouthPressLeft": 0.2},
    "surprised": {"browInnerUp": 0.6, "browOuterUpLeft": 0.6, "browOuterUpRight": 0.6, "eyeWideLeft": 0.5,
                  "eyeWideRight": 0.5, "jawOpen": 0.3},
    "angry": {"browDownLeft": 0.6, "browDownRight": 0.6, "noseSneerLeft": 0.3, "noseSneerRight": 0.3,
              "mouthPressLeft": 0.3, "mouthPressRight": 0.3},
}  # fmt: skip
"""Built-in emotion offsets as MediaPipe blendshape scores (unnamed ones 0); used when emotion_dim = 52."""


def emotion_vector(emotion, dim: int, presets: dict | None = None) -> np.ndarray | None:
    """The emotion condition for ``emotion`` (see the module docstring); None = ∅ (the learned null)."""
    presets = {k.lower(): v for k, v in (presets or {}).items()}
    if emotion is None:
        return None
    if isinstance(emotion, str):
        text = emotion.strip()
        name = text.lower()
        if name in presets:
            return _check_emotion(np.asarray(presets[name], np.float32), dim, name)
        if name == "neutral":
            return None
        if name in BLENDSHAPE_EMOTIONS:
            if dim != len(BLENDSHAPE_NAMES):
                raise UserError(f"emotion names need a 52-blendshape model; this one has {dim} emotion values")
            vec = np.zeros(dim, np.float32)
            for k, v in BLENDSHAPE_EMOTIONS[name].items():
                vec[BLENDSHAPE_NAMES.index(k)] = v
            return vec
        if "=" in text:
            if dim != len(BLENDSHAPE_NAMES):
                raise UserError(f"name=value emotions need a 52-blendshape model; this one has {dim} values")
            vec = np.zeros(dim, np.float32)
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, _, value = part.partition("=")
                if key.strip() not in BLENDSHAPE_NAMES:
                    raise UserError(f"unknown blendshape {key.strip()!r} in --emotion; see vasajax.facetrack.landmarks")
                vec[BLENDSHAPE_NAMES.index(key.strip())] = _float(value, "--emotion")
            return vec
        if "," in text or _is_float(text):
            return _check_emotion(np.array([_float(v, "--emotion") for v in text.split(",")], np.float32), dim, text)
        known = sorted({"neutral", *BLENDSHAPE_EMOTIONS, *presets})
        raise UserError(f"unknown emotion {text!r}; use one of {', '.join(known)} or {dim} comma-separated values")
    return _check_emotion(np.asarray(emotion, np.float32).reshape(-1), dim, "emotion")


def _check_emotion(vec: np.ndarray, dim: int, what: str) -> np.ndarray:
    if vec.shape != (dim,) or not np.all(np.isfinite(vec)):
        raise UserError(f"emotion {what!r} has {vec.size} values; this model needs {dim} finite values")
    return vec


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a number") from None
