"""Test set-up: 4 simulated CPU devices so sharding code runs on one CPU, x64 off, and one persistent XLA
compilation cache for the session.

Must run before anything initialises JAX's backends, hence at import time of the conftest.

Why the cache: compiling is most of this suite's CPU time, and many tests build the same tiny programs through
different Python objects (each test file's own ``jax.jit`` of the same model and shapes), which JAX's in-memory
cache cannot share. The persistent cache is keyed by the program itself, so the second file that compiles a
program loads it instead, and so do the worker processes that tests start (``$VASAJAX_TEST_XLA_CACHE``). It is
a fresh folder per session (removed at exit): a run never reuses another run's executables.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)

if not os.environ.get("VASAJAX_TEST_XLA_CACHE"):
    os.environ["VASAJAX_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="vasajax-test-xla-")
    atexit.register(shutil.rmtree, os.environ["VASAJAX_TEST_XLA_CACHE"], ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", os.environ["VASAJAX_TEST_XLA_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # smaller ones recompile faster than they load

HEAVY_FIRST = ("test_train_face.py", "test_notebooks.py", "test_motion_generate.py", "test_train_painters.py")
"""Files with the longest run (minutes of compiling and training on 2 cores): collected first, so that with
``pytest -n 2 --dist loadfile`` (``make test``) they start at once, beside the many short files, instead of
running alone at the end. Order inside a file is unchanged."""


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: every other file keeps its order
