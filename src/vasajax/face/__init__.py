"""Stage 1: the face latent space (VASA-1 §3.1, after MegaPortraits)."""

from vasajax.face.config import FaceConfig
from vasajax.face.model import FaceLatent, FaceLatentModel

__all__ = ["FaceConfig", "FaceLatent", "FaceLatentModel"]
