"""The device mesh (``data`` × ``fsdp``), batch sharding, and the FSDP rules for params and optimiser state (ZeRO-3
style: each large array split over ``fsdp`` on its largest divisible axis).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vasajax.errors import UserError

log = logging.getLogger("vasajax.train")

DATA_AXES = ("data", "fsdp")
"""Mesh axes that split the batch (all of them: fsdp devices also see different examples)."""


def make_mesh(fsdp: int = 1, devices: list | None = None) -> Mesh:
    """A 2-D mesh ``('data', 'fsdp')`` over ``devices`` (default: all devices of all processes).

    ``fsdp`` consecutive devices (on GPUs: of one node when fsdp divides the per-node count) share the shards
    of each large parameter; ``data`` = device count // fsdp.
    """
    devices = list(jax.devices() if devices is None else devices)
    if fsdp < 1 or len(devices) % fsdp:
        raise UserError(f"--fsdp {fsdp} must divide the number of devices ({len(devices)})")
    return Mesh(np.array(devices, dtype=object).reshape(len(devices) // fsdp, fsdp), DATA_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device."""
    return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
    """PartitionSpec of one array under FSDP: its largest axis divisible by ``fsdp`` goes to ``'fsdp'``."""
    if fsdp <= 1 or math.prod(shape) < min_size:
        return P()
    axes = [i for i in np.argsort(shape, kind="stable")[::-1] if shape[i] % fsdp == 0]
    if not axes:
        return P()
    spec: list[str | None] = [None] * len(shape)
    spec[int(axes[0])] = "fsdp"
    return P(*spec)


def fsdp_shardings(tree: Any, mesh: Mesh, min_size: int = 2**18) -> Any:
    """NamedShardings for a tree of arrays (or ShapeDtypeStructs): replicated, or split over ``'fsdp'``.

    The rule depends on the shape only, so an optimiser's moment estimates get their parameter's sharding.
    """
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(tuple(x.shape), fsdp, min_size)), tree)


def init_sharded(init_fn: Callable[[], Any], mesh: Mesh, min_size: int = 2**18) -> tuple[Any, Any]:
    """Run ``init_fn`` (no arguments, returns a tree of arrays) under ``jit`` straight into its shardings.

    No process ever holds the full unsharded state, which matters for the paper config with ``fsdp > 1``.
    Returns ``(state, shardings)``.
    """
    shardings = fsdp_shardings(jax.eval_shape(init_fn), mesh, min_size)
    return jax.jit(init_fn, out_shardings=shardings)(), shardings


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh, keys: tuple[str, ...] | None = None) -> dict:
    """This process's slice of the batch (numpy, leading axis = local batch) → global arrays on the mesh."""
    sharding = batch_sharding(mesh)
    keys = tuple(local) if keys is None else keys
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(local[k])) for k in keys}


def local_batch_size(global_batch_size: int, mesh: Mesh, accum_steps: int = 1) -> int:
    """The per-process batch for a global one; a UserError when it does not split evenly."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    if global_batch_size % (n_dev * accum_steps):
        raise UserError(
            f"--batch {global_batch_size} must be a multiple of devices × accumulation steps ({n_dev} × {accum_steps})"
        )
    return global_batch_size // n_proc


def to_host(tree: Any) -> Any:
    """Arrays (possibly spread over processes) → numpy, gathered on every process (a collective if multi-host)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
