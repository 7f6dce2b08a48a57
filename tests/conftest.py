"""Test set-up: 4 simulated CPU devices so sharding code runs on one CPU, and x64 off.

Must run before anything initialises JAX's backends, hence at import time of the conftest.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
