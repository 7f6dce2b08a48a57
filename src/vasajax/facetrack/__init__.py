"""Face tracking, the one face crop, and per-frame control labels (VASA-1 §3.2 conditions, §4 data).

VASA-1 trains on face-cropped talking videos and conditions its motion generator on the main eye gaze
direction g (spherical angles), a normalized head-to-camera distance d and an emotion offset e (§3.2);
its metrics need head pose (ΔP, §4.2). This package gets all of them from MediaPipe Tasks' FaceLandmarker
(478 landmarks incl. iris, 52 blendshapes, 4×4 facial transformation matrix), one idea per module:

- ``tracker``: :class:`~vasajax.facetrack.tracker.FaceTracker` (IMAGE or VIDEO running mode) →
  :class:`~vasajax.facetrack.tracker.FaceObservation` per face, largest first; ``find_faces`` / ``track_image``:
  any photo (faces down to ``MIN_FACE_PX``, a tile search when the whole image shows none), one face picked,
  one-line ``UserError``\\ s. MediaPipe itself is imported only when a tracker is made (it costs ~1 s).
- ``crop``: the crop, shared by data preparation and inference: ``CropConfig``, ``crop_params``,
  ``smooth_crops``, ``apply_crop``, ``crop_to_image_coords`` / ``image_to_crop_coords``, ``paste_crop``.
  Axis-aligned square crops (head roll stays in the image, as in VoxCeleb), sized from rotation-invariant face
  measures as in the FFHQ alignment (Karras et al. 2019).
- ``labels``: ``frame_labels`` (pose, gaze, distance, blendshapes, crop landmarks) and ``clip_labels``
  (stacked per-frame labels and the emotion offset = clip mean of the blendshapes; VASA-1 used HSEmotion
  coefficients, any labeler that gives a per-frame vector can replace the blendshapes); ``pose_from_matrix``,
  ``gaze_from_landmarks``, ``head_distance``.
- ``landmarks``: the landmarker's output layout: landmark ids (eyes, mouth corners), blendshape names.

Reading photos (``load_image``, ``to_uint8_rgb``, the bundled ``PORTRAITS``) is :mod:`vasajax.image`.

Coordinates: image pixels are continuous with pixel (i, j) covering [j, j+1) × [i, i+1), i.e. MediaPipe's
normalized coordinates times the width/height. Camera space (the landmarker's matrix): x right, y up,
z towards the viewer, centimetres; the canonical head (``modelfiles.canonical_mesh``) faces +z.
"""
