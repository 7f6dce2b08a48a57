"""vasajax: VASA-1 (Xu et al. 2024, arXiv 2404.10667) in JAX + Flax NNX.

Stage 1 (``vasajax.face``): a 3D face latent space (appearance volume, identity, head pose, facial dynamics).
Stage 2 (``vasajax.motion``): a diffusion transformer that turns audio into per-frame motion latents.
Stage 3 (``vasajax.Animator``, ``vasajax.pipeline``): portrait + speech → talking-face video.
See README.md for the map from the architecture to the files.
"""

__version__ = "0.1.0"

__all__ = ["Animator", "__version__"]


def __getattr__(name: str):
    """Lazy top-level API: ``vasajax.Animator`` imports JAX and the models only when first used."""
    if name == "Animator":
        from vasajax.pipeline import Animator

        return Animator
    raise AttributeError(f"module 'vasajax' has no attribute {name!r}")
