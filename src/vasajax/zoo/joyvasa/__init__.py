"""JoyVASA's audio-to-motion generator (Cao et al. 2024, arXiv 2411.09209; jdh-algo/JoyVASA, MIT) in JAX.

``config`` (sizes), ``dit`` (the diffusion transformer), ``schedule`` (its noise schedule), ``audio`` (its
HuBERT/wav2vec2 front end on ``vasajax.motion.wav2vec2``), ``sample`` (guided sampling, windowed generation),
``template`` (generated motion → LivePortrait keypoint parameters), ``convert`` (released weights) and ``stage``
(the ``"joyvasa"`` motion generator and ``"joyvasa-hubert"`` audio encoder entries).
"""
