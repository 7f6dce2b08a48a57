"""The zoo: foreign models ported to JAX/NNX, each with a key-table converter for its released weights.

Each sub-package holds one ported model family — ``liveportrait`` (KwaiVGI's LivePortrait renderer: F, M, W, G,
S) and ``joyvasa`` (jdh-algo's JoyVASA audio-to-motion DiT on LivePortrait's motion space) — written from an
understanding of the original code in vasajax's style (channels-last NNX modules, frozen configs), with parity
tests against fixtures the original modules produced (``tools/make_*fixtures.py``).

Both are wired as stage entries (``vasajax.stages``: renderer ``liveportrait``, generator ``joyvasa``, audio
``joyvasa-hubert``); ``vasajax convert liveportrait|joyvasa`` (``zoo.cli``) writes their export folders
(``zoo.export``), which ``vasajax animate --checkpoint`` and ``vasajax.load.load_stages`` read.
"""
