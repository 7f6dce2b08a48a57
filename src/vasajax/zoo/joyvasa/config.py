"""Configuration of JoyVASA's motion generator (``DitTalkingHead`` in upstream ``src/modules/dit_talking_head.py``).

The released checkpoint's sizes come from its pickled training ``args`` (read by ``convert.config_from_args``);
the defaults below are upstream's: ``load_model`` builds ``DitTalkingHead(motion_feat_dim, n_motions,
n_prev_motions, feature_dim, audio_model, n_diff_steps)`` from the args and leaves everything else at the
class defaults (8 layers, 8 heads, MLP ratio 4, alignment mask width 1, sinusoidal positions, cosine schedule,
x0 target, "incremental" CFG on the audio condition). Window sizes 100 + 25 are ``models.yaml``'s and
``train.py``'s; 70 motion dims = 63 expression + scale + 3 translation + pitch, yaw, roll (what
``gen_motion_sequence`` reads); 50 diffusion steps is ``train.py``'s default.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from vasajax.errors import UserError

PE_FORMS = ("constant", "prefix")


@dataclasses.dataclass(frozen=True, kw_only=True)
class JoyVASAConfig:
    """Sizes and inference settings of JoyVASA's motion diffusion transformer."""

    motion_dim: int = 70
    """Motion coefficients per frame: 63 expression (21 keypoints × 3), scale, t (3), pitch, yaw, roll."""
    window: int = 100
    """``n_motions``: frames generated per window (4 s at 25 fps)."""
    context: int = 25
    """``n_prev_motions``: frames of motion and audio features carried over from the previous window."""
    width: int = 512
    """``feature_dim``: transformer width (also the width of the mapped audio features)."""
    num_layers: int = 8
    """Transformer decoder layers (upstream's ``DenoisingNetwork`` default; ``load_model`` never changes it)."""
    num_heads: int = 8
    """Attention heads."""
    mlp_ratio: int = 4
    """Feed-forward width = ``mlp_ratio × width``."""
    audio_dim: int = 768
    """Width of the audio encoder's hidden states (768 for the base HuBERT/wav2vec2 models upstream uses)."""
    align_mask_width: int = 1
    """Cross-attention alignment: frame i attends to audio frames [i - w + 1, i + w) (1: its own frame only)."""
    pe_form: Literal["constant", "prefix"] = "constant"
    """Sinusoidal position term added to the motion tokens. "constant": ``pe[L]`` (one vector, L = sequence
    length) as upstream's code did until commit 74290f6 (2025-12-09) — the released weights (Nov 2024) were
    trained with it. "prefix": ``pe[:L]`` (one position per token), upstream's code after that commit."""
    pe_max_len: int = 600
    """Rows of the sinusoid table (``PositionalEncoding`` default; the constant form reads row L < this)."""
    num_diffusion_steps: int = 50
    """``n_diff_steps``: T of the schedule; the sampler runs all T steps."""
    schedule: str = "cosine"
    """β schedule ('cosine', 'linear', 'quadratic', 'sigmoid'); upstream's inference always builds 'cosine',
    then loads the checkpoint's stored schedule buffers over it (``convert`` uses the stored ones)."""
    target: Literal["sample", "noise"] = "sample"
    """What the network predicts: the clean motion x0 ('sample', upstream's default) or the noise."""
    fps: int = 25
    """Video frame rate of the motion (and of the audio features)."""
    sample_rate: int = 16000
    """Audio sample rate."""
    pad_mode: Literal["zero", "replicate"] = "zero"
    """How the last audio window is padded to a full window."""
    audio_model: str = "hubert_zh"
    """Upstream's name of the audio encoder: 'hubert_zh' / 'hubert_zh_ori' (chinese-hubert-base), 'hubert'
    (hubert-base-ls960) or 'wav2vec2' (wav2vec2-base-960h). Informational: the encoder folder decides."""

    def __post_init__(self):
        if self.pe_form not in PE_FORMS:
            raise UserError(f"JoyVASA config: pe_form must be one of {PE_FORMS}, got {self.pe_form!r}")
        if self.width % self.num_heads or self.width % 2:
            raise UserError("JoyVASA config: width must be even and a multiple of num_heads")
        if not 0 < self.context <= self.window:
            raise UserError("JoyVASA config: context must be in 1..window")
        if self.pe_form == "constant" and self.context + self.window >= self.pe_max_len:
            raise UserError("JoyVASA config: context + window must be below pe_max_len")
        if self.target not in ("sample", "noise"):
            raise UserError(f"JoyVASA config: target must be 'sample' or 'noise', got {self.target!r}")
        if self.pad_mode not in ("zero", "replicate"):
            raise UserError(f"JoyVASA config: pad_mode must be 'zero' or 'replicate', got {self.pad_mode!r}")
        if (self.sample_rate * self.window) % self.fps:
            raise UserError("JoyVASA config: window × sample_rate must be a whole number of frames' samples")

    @property
    def samples_per_frame(self) -> float:
        """Audio samples per video frame (640 at 16 kHz, 25 fps)."""
        return self.sample_rate / self.fps

    @property
    def window_samples(self) -> int:
        """Audio samples per window (64000 for 100 frames)."""
        return round(self.samples_per_frame * self.window)

    @classmethod
    def released(cls, **kw) -> JoyVASAConfig:
        """The released motion generators' sizes (upstream defaults; ``convert`` reads the real ones)."""
        return cls(**kw)

    paper = released
    small = released

    @classmethod
    def tiny(cls, **kw) -> JoyVASAConfig:
        """Tests: the fixture's reduced sizes (8 heads as upstream, 2 layers, width 32, 12 motion dims,
        8 + 4 frames, 10 diffusion steps, a 32-wide audio encoder)."""
        base = dict(
            num_layers=2,
            motion_dim=12,
            window=8,
            context=4,
            width=32,
            audio_dim=32,
            num_diffusion_steps=10,
            audio_model="hubert",
        )
        return cls(**{**base, **kw})
