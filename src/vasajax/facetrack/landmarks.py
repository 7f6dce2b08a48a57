"""What MediaPipe FaceLandmarker's outputs index: landmark ids (eyes, mouth corners), blendshape names, and
the eye centres that the crop and the gaze labels are measured from."""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478
NUM_BLENDSHAPES = 52
BLENDSHAPE_NAMES: tuple[str, ...] = tuple(
    """
    _neutral browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff
    cheekSquintLeft cheekSquintRight eyeBlinkLeft eyeBlinkRight eyeLookDownLeft eyeLookDownRight
    eyeLookInLeft eyeLookInRight eyeLookOutLeft eyeLookOutRight eyeLookUpLeft eyeLookUpRight
    eyeSquintLeft eyeSquintRight eyeWideLeft eyeWideRight jawForward jawLeft jawOpen jawRight mouthClose
    mouthDimpleLeft mouthDimpleRight mouthFrownLeft mouthFrownRight mouthFunnel mouthLeft
    mouthLowerDownLeft mouthLowerDownRight mouthPressLeft mouthPressRight mouthPucker mouthRight
    mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper mouthSmileLeft mouthSmileRight
    mouthStretchLeft mouthStretchRight mouthUpperUpLeft mouthUpperUpRight noseSneerLeft noseSneerRight
    """.split()
)
"""Names of the 52 blendshape scores, in MediaPipe's output order."""

# Landmark ids (MediaPipe face mesh). "Right" = the subject's right eye, which appears on the image's left.
RIGHT_EYE = {"outer": 33, "inner": 133, "upper": 159, "lower": 145, "iris": 468}
LEFT_EYE = {"outer": 263, "inner": 362, "upper": 386, "lower": 374, "iris": 473}
MOUTH_CORNERS = (61, 291)


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(…, 3) midpoints of each eye's corners: (subject's right = image left, subject's left)."""
    r = 0.5 * (landmarks[..., RIGHT_EYE["outer"], :] + landmarks[..., RIGHT_EYE["inner"], :])
    l = 0.5 * (landmarks[..., LEFT_EYE["outer"], :] + landmarks[..., LEFT_EYE["inner"], :])
    return r, l


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """How far the lips part: inner-lip gap (landmarks 13/14) over the outer-eye-corner distance (33/263), so it
    does not depend on the face's size in the image; works on ...×478×2|3 (only x, y are used)."""
    lm = np.asarray(landmarks, np.float64)[..., :2]
    gap = np.linalg.norm(lm[..., 13, :] - lm[..., 14, :], axis=-1)
    outer = RIGHT_EYE["outer"], LEFT_EYE["outer"]
    return gap / np.linalg.norm(lm[..., outer[0], :] - lm[..., outer[1], :], axis=-1)
