"""Stage-1 training-step cost: step time, samples/s and peak memory for one self-reenactment step.

    python benchmarks/face_train_step.py --config paper --batch 4 --dtype bfloat16     # one GPU

The step is the core of stage-1 training without the adversarial and perceptual terms (those arrive with the
trainer): encode a source frame, decode it with a driver frame's motion, L1 to the driver, AdamW update.
It sizes the paper config's memory per device before the sharded trainer exists.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from face_latent import device_name, flops_of, peak_memory_gib  # noqa: E402
from vasajax.face.config import PRESETS  # noqa: E402
from vasajax.face.model import FaceLatentModel, count_params  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args(argv)
    cfg = PRESETS[args.config](dtype=args.dtype)
    model = FaceLatentModel(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    opt = optax.adamw(2e-4, weight_decay=1e-2)
    opt_state = opt.init(params)

    def loss_fn(p, src, drv):
        m = nnx.merge(graphdef, p)
        lat = m.encode(src)
        pose, dyn = m.encode_motion(drv)
        return jnp.abs(m.decode(lat.appearance, lat.identity, pose, dyn) - drv).mean()

    @jax.jit
    def step(p, o, src, drv):
        loss, grads = jax.value_and_grad(loss_fn)(p, src, drv)
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    s = cfg.image_size
    key = jax.random.key(0)
    src = jax.random.uniform(key, (args.batch, s, s, 3))
    drv = jax.random.uniform(jax.random.key(1), (args.batch, s, s, 3))
    t0 = time.perf_counter()
    lowered = step.lower(params, opt_state, src, drv)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    params, opt_state, loss = compiled(params, opt_state, src, drv)
    jax.block_until_ready(loss)
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        params, opt_state, loss = compiled(params, opt_state, src, drv)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    row = dict(
        config=args.config,
        dtype=args.dtype,
        batch=args.batch,
        params_M=count_params(params) / 1e6,
        step_s=dt,
        samples_per_s=args.batch / dt,
        gflops_per_step=flops_of(lowered) / 1e9,
        compile_s=compile_s,
        peak_memory_gib=peak_memory_gib(),
        loss=float(loss),
    )
    dev = device_name()
    fields = (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
    print(f"device: {dev}  " + "  ".join(fields))
    out = pathlib.Path(__file__).parent / "results" / f"face_train_step-{dev}-{datetime.date.today().isoformat()}.json"
    prev = json.loads(out.read_text())["rows"] if out.exists() else []
    out.write_text(
        json.dumps(dict(benchmark="face_train_step", device=dev, jax=jax.__version__, rows=prev + [row]), indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
