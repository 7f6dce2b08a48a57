"""Identity similarity between the portrait and generated frames (identity preservation, VASA-1 §3.1 / §4).

VASA-1 trains with an identity loss but reports no identity metric; talking-face papers usually give a cosine
similarity of ArcFace embeddings, whose weights cannot be had offline. This module uses dlib's 128-d face
ResNet (``face-recognition-models`` + ``dlib-bin`` on PyPI, the ``eval`` extra: weights ship inside the wheel,
nothing downloads): ``id_cos`` = mean cosine similarity portrait ↔ frames, ``id_dist`` = mean Euclidean
distance (dlib's "same person" threshold is 0.6). Faces are located with the MediaPipe landmark box when the
caller has one (consistent with the other metrics), otherwise with dlib's HOG detector. Without the packages,
:class:`IdentityEmbedder` raises a ``UserError`` that says what to install, and ``vasajax eval`` leaves the
columns out with that note.
"""

from __future__ import annotations

import numpy as np

from vasajax.errors import UserError

INSTALL_HINT = "pip install face-recognition-models dlib-bin (the 'eval' extra: pip install -e '.[eval]')"


class IdentityEmbedder:
    """dlib face ResNet v1: ``embed(image_uint8_HxWx3, box=None) -> (128,)`` or None when no face is found."""

    def __init__(self):
        import importlib.util
        import pathlib

        try:
            import dlib
        except ImportError as e:
            raise UserError(f"identity similarity needs dlib: {INSTALL_HINT}") from e
        # Locate the model files without importing face_recognition_models (it needs setuptools' pkg_resources).
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"identity similarity needs dlib's face models: {INSTALL_HINT}")
        models = pathlib.Path(next(iter(spec.submodule_search_locations))) / "models"
        shape, net = (
            models / "shape_predictor_5_face_landmarks.dat",
            models / "dlib_face_recognition_resnet_model_v1.dat",
        )
        if not (shape.is_file() and net.is_file()):
            raise UserError(f"face_recognition_models in {models.parent} lacks its .dat files; reinstall it")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(shape))
        self._net = dlib.face_recognition_model_v1(str(net))

    def embed(
        self, image_uint8_HxWx3: np.ndarray, box: tuple[float, float, float, float] | None = None
    ) -> np.ndarray | None:
        """128-d descriptor of the face in ``box`` (x0, y0, x1, y1 pixels), or of the largest detected face."""
        img = np.ascontiguousarray(np.asarray(image_uint8_HxWx3, np.uint8)[..., :3])
        if box is None:
            dets = self._detector(img, 1)
            if not len(dets):
                return None
            rect = max(dets, key=lambda r: r.area())
        else:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            rect = self._dlib.rectangle(x0, y0, x1, y1)
        return np.asarray(self._net.compute_face_descriptor(img, self._shape(img, rect)), np.float64)


def landmark_box(landmarks_Nx2: np.ndarray) -> tuple[float, float, float, float] | None:
    """Bounding box of MediaPipe landmarks (None when they are NaN)."""
    lm = np.asarray(landmarks_Nx2, np.float64)[:, :2]
    if not np.all(np.isfinite(lm)):
        return None
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    return float(x0), float(y0), float(x1), float(y1)


def identity_similarity(
    embedder: IdentityEmbedder,
    portrait_uint8: np.ndarray,
    frames_TxHxWx3: np.ndarray,
    landmarks_Tx478xC: np.ndarray | None = None,
    every: int = 5,
) -> dict[str, float]:
    """``id_cos`` and ``id_dist`` of every ``every``-th frame against the portrait (frames without a face are
    skipped; NaN when none has one)."""
    ref = embedder.embed(portrait_uint8)
    if ref is None:
        raise UserError("no face found in the portrait for identity similarity; use a photo with a clear face")
    cos, dist = [], []
    for i in range(0, len(frames_TxHxWx3), max(1, every)):
        box = landmark_box(landmarks_Tx478xC[i]) if landmarks_Tx478xC is not None else None
        if landmarks_Tx478xC is not None and box is None:
            continue
        e = embedder.embed(frames_TxHxWx3[i], box)
        if e is None:
            continue
        cos.append(float(e @ ref / (np.linalg.norm(e) * np.linalg.norm(ref) + 1e-12)))
        dist.append(float(np.linalg.norm(e - ref)))
    if not cos:
        return {"id_cos": float("nan"), "id_dist": float("nan")}
    return {"id_cos": float(np.mean(cos)), "id_dist": float(np.mean(dist))}
