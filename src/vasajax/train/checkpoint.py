"""Orbax checkpoints of a run folder: train state, data-iterator state and config, restored onto shardings; the config
check on resume.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax

from vasajax.errors import UserError
from vasajax.train.config import config_diff
from vasajax.train.distributed import gather_json, is_main_process

log = logging.getLogger("vasajax.train")


BOOKKEEPING_KEYS = ("log_every", "sample_every", "ckpt_every", "keep_checkpoints", "async_checkpoints")
"""``run`` settings a resumed run may change: how often it logs, samples and checkpoints, not what it computes."""


def _without_bookkeeping(config: Mapping[str, Any]) -> dict:
    config = dict(config)
    if isinstance(config.get("run"), dict):
        config["run"] = {k: v for k, v in config["run"].items() if k not in BOOKKEEPING_KEYS}
    return config


def check_config(
    workdir: str | os.PathLike, config: Mapping[str, Any], upgrade: Callable[[dict], dict] | None = None
) -> None:
    """Write ``workdir/config.json`` on a new run; on an existing one, a UserError if ``config`` differs.

    ``upgrade`` (e.g. ``lambda d: FaceTrainConfig.from_dict(d).to_dict()``) fills a stored config written before a
    field existed with that field's default before comparing, so adding an option with a neutral default does not
    orphan older runs; a stored value that differs from the new one is still an error. The ``run`` section's
    bookkeeping (``BOOKKEEPING_KEYS``: logging, sampling and checkpoint intervals) may change on a resume."""
    path = Path(workdir) / "config.json"
    config = json.loads(json.dumps(config))  # what a reload will see (tuples → lists)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path} is not valid JSON; delete it or use a new --workdir") from None
        if upgrade is not None:
            old = json.loads(json.dumps(upgrade(old)))
        diff = config_diff(_without_bookkeeping(old), _without_bookkeeping(config))
        if diff:
            raise UserError(
                f"{workdir} holds a run with another config ({diff}); use the same options to resume, "
                "or a new --workdir"
            )
        return
    if is_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"config.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)


class Checkpointer:
    """orbax ``CheckpointManager`` for one run folder: ``workdir/checkpoints/<step>/{state,data,config}``.

    * ``state``: the train state pytree (params, optimiser state, EMA, step …), saved sharded by orbax and
      restored straight onto the shardings of an abstract target (``jax.ShapeDtypeStruct(..., sharding=…)``);
    * ``data``: ``{"processes": [iterator state of process 0, 1, …]}`` (JSON, gathered from every process);
    * ``config``: the run config (JSON), also kept as ``workdir/config.json`` and checked on start.

    Saves are asynchronous (``wait()`` blocks until the last one is on disk); the last ``keep`` are kept.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        config: Mapping[str, Any],
        *,
        keep: int = 3,
        every: int = 1000,
        async_save: bool = True,
        upgrade: Callable[[dict], dict] | None = None,
    ):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.workdir = Path(workdir).absolute()
        self.config = json.loads(json.dumps(config))
        self.every = every
        check_config(self.workdir, self.config, upgrade)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(self.workdir / "checkpoints", options=options, item_handlers=handlers)

    @property
    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        """True every ``every`` steps."""
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, state: Any, data_state: Any = None) -> None:
        """Save ``state`` and this process's ``data_state`` (JSON) at ``step`` (a collective: call everywhere)."""
        ocp = self._ocp
        data = {"processes": gather_json(data_state), "process_count": jax.process_count()}
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data),
                config=ocp.args.JsonSave(self.config),
            ),
            force=True,
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any]:
        """``(state, data_state)`` of ``step`` (default: latest) onto ``abstract_state``'s shardings.

        ``abstract_state`` is a tree of ``jax.ShapeDtypeStruct`` with ``sharding`` set (``abstract_like``).
        ``data_state`` is this process's iterator state, or None when the process count changed since the save
        (the data order then restarts; a warning says so).
        """
        ocp = self._ocp
        step = self.latest_step if step is None else step
        if step is None:
            raise UserError(f"no checkpoint in {self.workdir}")
        self._check_fits(step, abstract_state)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()),
        )
        data = out["data"] or {}
        procs = data.get("processes") or []
        if len(procs) != jax.process_count():
            log.warning(
                "checkpoint was written by %d processes, this job has %d: data order restarts",
                len(procs),
                jax.process_count(),
            )
            return out["state"], None
        return out["state"], procs[jax.process_index()]

    def _check_fits(self, step: int, abstract_state: Any) -> None:
        """ValueError naming the first array ``abstract_state`` wants that step ``step`` lacks or stores with another
        shape. Checked from the stored metadata before any array is read: a failed orbax restore would leave its
        read coroutines pending (they surface later as "Event loop is closed" warnings)."""
        stored = self.manager.item_metadata(step)["state"]
        if stored is None:  # an orbax version without per-array metadata: let restore find out
            return

        def shapes(tree) -> dict[str, tuple]:
            flat = jax.tree_util.tree_flatten_with_path(tree)[0]
            return {".".join(_key_name(k) for k in p): tuple(x.shape) for p, x in flat}

        have, want = shapes(stored), shapes(abstract_state)
        for name, shape in want.items():
            if name not in have:
                raise ValueError(f"checkpoint step {step} has no array {name}")
            if have[name] != shape:
                raise ValueError(f"checkpoint step {step} stores {name} as {have[name]}, wanted {shape}")

    def wait(self) -> None:
        """Block until every pending asynchronous save is complete."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _key_name(key: Any) -> str:
    """One pytree path entry as a plain name (dict key, sequence index or attribute: orbax stores all three as
    dict keys)."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of ``tree`` (arrays or shape structs) carrying ``shardings`` — a restore target."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
