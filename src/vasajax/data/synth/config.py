"""SynthTalk's configuration: how clips look (size, framing, codec) and how the head, eyes and mouth move."""

from __future__ import annotations

import dataclasses


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
    """``facetrack.crop.CropConfig.scale`` of the face crop (the crop data preparation uses; larger = looser)."""
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
