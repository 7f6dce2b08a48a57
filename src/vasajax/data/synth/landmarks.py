"""The MediaPipe landmark groups SynthTalk moves (478 = 468 mesh + 10 iris): inner and outer lip contours,
eyelids and irises, the face oval, the outer eye corners. (The ground-truth measure of how far
the lips part, ``mouth_opening``, is ``facetrack.landmarks``': it is the same on tracked landmarks.)"""

from __future__ import annotations

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
