"""Stage-1 designs compared at equal CPU time: which one learns fastest on a small machine.

    python benchmarks/face_designs.py run --name warp --core 1 --minutes 15 30 --workdir /tmp/cmp \
        -- --config small --data runs/demo/synthtalk/train --model pixel_warp=1 --batch 2 --no-gan ...
    python benchmarks/face_designs.py eval --data runs/demo/synthtalk/heldout --workdir /tmp/cmp

``run`` starts ``vasajax train-face`` (the arguments after ``--``) pinned to one CPU core (``taskset``), so two
designs can run side by side with a core each, and copies the run's newest checkpoint whenever the trainer's
*CPU time* (user + system, all its threads) crosses one of ``--minutes``: a fair clock even when other jobs share
the machine. Snapshots are run folders of their own (``<workdir>/<name>@<minutes>m``, with the step and CPU time
in ``snapshot.json``); the trainer is stopped (SIGTERM, it checkpoints and exits) after the last one.

``eval`` measures every snapshot on held-out clips (``vasajax.eval.face_recon.self_reenactment``): PSNR of the
whole frame and of the mouth box (from the tracker's lip landmarks), against copying the source frame, and
prints the table that ``checkpoints/README.md`` shows (also ``<workdir>/designs.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))


def _cpu_seconds(proc) -> float:
    import psutil

    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _latest_checkpoint(run: pathlib.Path) -> pathlib.Path | None:
    steps = [p for p in (run / "checkpoints").glob("*") if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").exists()]
    return max(steps, key=lambda p: int(p.name)) if steps else None


def run(args: argparse.Namespace) -> int:
    import psutil

    work = pathlib.Path(args.workdir)
    run_dir = work / args.name
    work.mkdir(parents=True, exist_ok=True)
    vj = shutil.which("vasajax") or str(pathlib.Path(sys.executable).with_name("vasajax"))
    run_dir = pathlib.Path(args.run_dir) if args.run_dir else run_dir
    cmd = [vj, "train-face", "--workdir", str(run_dir), *args.train_args]
    env = dict(os.environ)
    if args.core >= 0:
        cmd = ["taskset", "-c", str(args.core), *cmd]
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    log = open(work / f"{args.name}.log", "w")  # noqa: SIM115
    child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    proc = psutil.Process(child.pid)
    marks = sorted(args.minutes)
    t0 = time.time()
    while marks and child.poll() is None:
        time.sleep(2)
        cpu = _cpu_seconds(proc)
        if cpu < marks[0] * 60:
            continue
        ck = _latest_checkpoint(run_dir)
        if ck is not None:
            snap = work / f"{args.name}@{marks[0]}m"
            shutil.rmtree(snap, ignore_errors=True)
            (snap / "checkpoints").mkdir(parents=True)
            shutil.copy(run_dir / "config.json", snap / "config.json")
            shutil.copytree(ck, snap / "checkpoints" / ck.name)
            info = {"minutes": marks[0], "cpu_s": cpu, "wall_s": time.time() - t0, "step": int(ck.name)}
            (snap / "snapshot.json").write_text(json.dumps(info))
            print(json.dumps({"snapshot": str(snap), **info}), flush=True)
        marks.pop(0)
    if child.poll() is None and not args.keep_running:
        child.send_signal(signal.SIGTERM)
    return child.wait()


def evaluate(args: argparse.Namespace) -> int:
    from vasajax.eval.face_recon import self_reenactment
    from vasajax.train.face import load_model

    work = pathlib.Path(args.workdir)
    out = work / "designs.json"
    rows_before = json.loads(out.read_text()) if out.exists() else []
    done = {r["snapshot"]: r for r in rows_before if "sharpness_model" in r}  # evaluated before
    rows = []
    for snap in sorted(work.glob("*@*m"), key=lambda p: (p.name.split("@")[0], float(p.name.split("@")[1][:-1]))):
        if snap.name not in done:
            info = json.loads((snap / "snapshot.json").read_text())
            res = self_reenactment(load_model(snap), args.data, max_clips=args.max_clips, num_drivers=args.drivers)
            done[snap.name] = {"snapshot": snap.name, "design": snap.name.split("@")[0], **info, **res}
            print(json.dumps(done[snap.name]), flush=True)
        rows.append(done[snap.name])
        out.write_text(json.dumps(rows, indent=1))
    print("| design | CPU min | steps | PSNR (dB) | mouth PSNR (dB) | sharpness | copy-source PSNR / mouth |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['design']} | {r['minutes']} | {r['step']} | {r['psnr_model_db']:.2f} "
            f"| {r['psnr_mouth_model_db']:.2f} | {r['sharpness_model']:.0f} "
            f"| {r['psnr_copy_source_db']:.2f} / {r['psnr_mouth_copy_db']:.2f} |"
        )
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train one design pinned to a core, snapshot by CPU time")
    r.add_argument("--name", required=True)
    r.add_argument("--core", type=int, required=True, help="CPU core to pin the run to (one thread); -1: no pin")
    r.add_argument("--run-dir", help="train-face workdir (default <workdir>/<name>)")
    r.add_argument("--keep-running", action="store_true", help="let the run finish after the last snapshot")
    r.add_argument("--minutes", type=float, nargs="+", required=True)
    r.add_argument("--workdir", required=True)
    r.add_argument("train_args", nargs=argparse.REMAINDER)
    e = sub.add_parser("eval", help="held-out PSNR (frame and mouth) of every snapshot")
    e.add_argument("--workdir", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--max-clips", type=int, default=12)
    e.add_argument("--drivers", type=int, default=6)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        args.train_args = [a for a in args.train_args if a != "--"]
        args.minutes = [int(m) if float(m).is_integer() else m for m in args.minutes]
        return run(args)
    return evaluate(args)


if __name__ == "__main__":
    raise SystemExit(main())
