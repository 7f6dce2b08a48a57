"""benchmarks/timing.py: contended calls are detected, retried and discarded; results never mix clean and busy calls."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINUX = os.path.exists("/proc/stat")


@pytest.fixture(scope="module")
def timing():
    spec = importlib.util.spec_from_file_location("bench_timing", ROOT / "benchmarks" / "timing.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def scripted(timing, samples, cores=2):
    """A fake counter source: sample k lasts wall_k seconds, this process uses own_k CPU seconds and the others
    share_k of the ``cores``; measure() calls it twice per sample."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    seq, wall, cpu, busy = [], 0.0, 0.0, 0
    for w, share, own in samples:
        seq.append(timing.Sample(wall, cpu, busy, cores))
        wall, cpu, busy = wall + w, cpu + own, busy + round((share * w * cores + own) * hz)
        seq.append(timing.Sample(wall, cpu, busy, cores))
    it = iter(seq)
    return lambda: next(it)


def test_statistics_use_only_clean_calls(timing):
    # (wall s, others' share, own CPU s): two busy samples, slow, among three clean ones
    samples = [(5.0, 0.5, 1.0), (1.0, 0.0, 1.0), (9.0, 0.9, 1.0), (1.2, 0.02, 1.0), (1.1, 0.0, 1.0)]
    t = timing.measure(lambda: None, repeats=3, max_tries=6, min_sample_s=0, probe=scripted(timing, samples))
    assert [c.contended for c in t.calls] == [True, False, True, False, False]
    assert len(t.calls) == 5  # stopped once 3 clean samples were in
    assert (t.used, t.discarded, t.contended, t.measured) == (3, 2, False, True)
    assert t.times_s == pytest.approx([1.0, 1.2, 1.1])
    assert (t.median_s, t.min_s) == (pytest.approx(1.1), pytest.approx(1.0))
    assert t.others_share == pytest.approx(0.0, abs=0.01)
    c = t.contention()
    assert c["discarded"] == 2 and not c["contended"] and c["measured"] and c["others_share_max"] == pytest.approx(0.9)
    assert set(c["loadavg"]) == {"before", "after"}


def test_no_clean_call_is_flagged_not_mixed(timing):
    samples = [(3.0, 0.6, 1.0), (2.0, 0.3, 1.0), (4.0, 0.8, 1.0), (2.5, 0.4, 1.0)]
    t = timing.measure(lambda: None, repeats=2, max_tries=4, min_sample_s=0, probe=scripted(timing, samples))
    assert t.contended and len(t.calls) == 4
    assert t.times_s == pytest.approx([2.0, 2.5])  # the two least contended samples
    assert (t.used, t.discarded) == (2, 2)
    assert t.contention()["contended"] and timing.marker(t.contention()).startswith("CONTENDED")
    # a threshold above every share makes all of them clean
    t = timing.measure(lambda: None, repeats=2, min_sample_s=0, threshold=0.9, probe=scripted(timing, samples))
    assert not t.contended and t.times_s == pytest.approx([3.0, 2.0])


def test_without_proc_stat_only_loadavg(timing):
    seq = iter([timing.Sample(0.0, 0.0, None, 2), timing.Sample(1.0, 0.5, None, 2)] * 3)
    t = timing.measure(lambda: None, repeats=3, min_sample_s=0, probe=lambda: next(seq))
    assert not t.measured and not t.contended and t.others_share is None and t.discarded == 0
    assert t.contention()["measured"] is False and "not measured" in timing.marker(t.contention())


def test_inner_loop_for_short_calls(timing):
    n = []
    t = timing.measure(lambda: n.append(1), repeats=2, min_sample_s=0.02)
    assert t.inner > 1 and len(n) == 2 + t.inner * len(t.calls)  # warm-up, calibration, samples
    assert t.median_s < 0.02  # per call, not per sample


BUSY_CHILD = """
import sys, time
t0 = time.monotonic()
while time.process_time() < 0.3 and time.monotonic() - t0 < 5:  # spin until 0.3 CPU s (or 5 s on a full box)
    pass
print(time.process_time(), flush=True)
sys.stdin.read()  # stay alive (unreaped) until the timed call is over
"""


@pytest.mark.skipif(not LINUX, reason="needs /proc/stat")
def test_busy_child_makes_the_call_contended(timing):
    procs = []

    def call():
        p = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)  # fmt: skip
        procs.append((p, float(p.stdout.readline())))  # parent waits (idle) while the child spins

    t = timing.measure(call, repeats=1, max_tries=1, warmup=0, min_sample_s=0)
    p, child_cpu = procs[0]
    p.stdin.close()
    p.wait()
    (c,) = t.calls
    assert child_cpu > 0.05
    # The child's CPU time is "others'" (it was not reaped during the call): at least most of it must show up,
    # whatever else the machine was doing (on a loaded box others_cpu_s is larger still).
    assert c.others_cpu_s >= 0.6 * child_cpu, (c, child_cpu)
    assert c.contended == (c.others_share > 0.1) and t.contended == c.contended
    if len(os.sched_getaffinity(0)) <= 4:  # the child alone is ≥ 0.3 CPU s over ~0.3 s on ≤ 4 cores: share > 0.1
        assert c.contended, (c, child_cpu)


@pytest.mark.skipif(not LINUX, reason="needs /proc/stat")
def test_idle_call_measures_no_own_cpu_and_is_clean_on_an_idle_box(timing):
    t = timing.measure(lambda: time.sleep(0.3), repeats=1, max_tries=1, warmup=0, min_sample_s=0)
    (c,) = t.calls
    assert c.self_cpu_s < 0.05 and c.others_share is not None and c.others_share >= 0 and t.measured
    snap = timing.load_snapshot(window_s=0.2, top=2)
    assert snap["measured"] and snap["cores"] >= 1 and len(snap["loadavg"]) == 3
    if snap["others_share"] < 0.02 and c.others_share is not None:  # the box is idle now: the sleep must be clean
        assert not c.contended, (c, snap)


def test_watch_and_combine(timing):
    with timing.Watch() as w:
        time.sleep(0.05)
    a = w.contention()
    assert w.call.wall_s >= 0.05 and a["discarded"] == 0 and a["measured"] == LINUX
    a = dict(a, measured=True, contended=False, others_share=0.05, others_share_max=0.05)
    b = dict(a, contended=True, others_share=0.7, others_share_max=0.9, discarded=3)
    both = timing.combine({"encode": a, "decode": b})
    assert both["contended"] and both["discarded"] == 3 and both["others_share"] == 0.7
    assert set(both["parts"]) == {"encode", "decode"}
