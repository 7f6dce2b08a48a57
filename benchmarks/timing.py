"""Timing that knows when the machine was busy: wall time per call, and the CPU time other processes took meanwhile.

A wall-clock benchmark on a shared machine measures the machine as much as the code: the paper motion window
(10 steps) was recorded at 4,838 ms on the shared 2-core CPU at load average ~11; on an idle one it takes ~1.0 s.
This module times each call and measures the contention over the same interval, so that contended calls are
retried or discarded and every result says how clean it was.

    from timing import load_snapshot, measure

    t = measure(lambda: f(x), repeats=5, block=jax.block_until_ready)
    row.update(ms=1000 * t.median_s, contention=t.contention())

How contention is measured (Linux): ``/proc/stat`` counts the busy jiffies (user, nice, system, irq, softirq,
steal) of every CPU. Over a timed interval, the busy CPU seconds of the CPUs this process may run on
(``os.sched_getaffinity``) minus this process's own CPU time (``resource.getrusage``: all its threads, plus
children it reaped) is the CPU time *other* processes used: ``others_cpu_s``. Divided by what those CPUs could
give, ``others_share = others_cpu_s / (wall_s × cores)``: 0 on an idle machine, 1 when others kept every core
busy the whole time.

A call is *contended* when ``others_share`` exceeds :data:`CONTENDED_SHARE` (0.1). Why 0.1: an idle box should
show only a few hundredths (daemons, the kernel, tick-accounting error; not yet checked on this project's 2-core
machine, which was busy when this was written), while one other process spinning one of two cores shows ~0.5.
A tenth of the CPUs taken by others can slow a multi-threaded XLA computation by about as much or more (its
threads wait at barriers for the slowest one), i.e. beyond the usual spread between clean repeats.
Change it per call with ``threshold=``.

The counters tick at 1/``SC_CLK_TCK`` s (10 ms) and are sampled per tick, so a share over a short interval is
mostly quantisation error: :func:`measure` therefore times samples of at least ``min_sample_s`` (0.5 s),
running a short ``fn`` ``inner`` times per sample (like ``timeit``'s autorange) and reporting time per call.

Other systems (no ``/proc/stat``): only the load average is recorded, and ``measured`` is False.

API: :func:`measure` (repeated calls → :class:`Timing`, whose ``contention()`` is a row's ``contention`` field),
:class:`Watch` (one unrepeated run, e.g. a whole clip: recorded and flagged, not retried), :func:`combine` (one
row's field from several timed parts), :func:`load_snapshot` (a results header: load average, cores, others'
share and the busiest other processes over a short window), :func:`marker` (text for printed tables) and
:func:`merge_rows` (same-day rows: a clean earlier row is not replaced by a contended one).
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

CONTENDED_SHARE = 0.1
"""Default threshold on ``others_share`` above which a call counts as contended (see the module docstring)."""

_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest time is already inside user/nice)


def _cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _busy_jiffies(cpus: set[int]) -> int | None:
    """Busy jiffies summed over ``cpus`` since boot, or None where ``/proc/stat`` is missing (not Linux)."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy, found = 0, False
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            v = rest.split()
            busy += sum(int(v[i]) for i in _BUSY_FIELDS if i < len(v))
            found = True
    return busy if found else None


def _self_cpu_s() -> float:
    """CPU seconds of this process (all threads) and of the children it has waited for."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@dataclasses.dataclass(frozen=True)
class Sample:
    """Counters at one instant (see :func:`sample`)."""

    wall: float
    self_cpu: float
    busy: int | None  # busy jiffies of the allowed CPUs; None: not measurable here
    cores: int


def sample(cpus: set[int] | None = None) -> Sample:
    cpus = _cpus() if cpus is None else cpus
    return Sample(time.perf_counter(), _self_cpu_s(), _busy_jiffies(cpus), len(cpus))


@dataclasses.dataclass(frozen=True)
class Call:
    """One timed sample: ``inner`` calls of ``fn``; times are per sample (divide by ``inner`` for per call)."""

    wall_s: float
    self_cpu_s: float
    others_cpu_s: float | None  # None: not measured (no /proc/stat)
    others_share: float | None
    contended: bool
    inner: int = 1


def interval(a: Sample, b: Sample, threshold: float = CONTENDED_SHARE, inner: int = 1) -> Call:
    """What happened between two samples: wall time, own CPU time, others' CPU time and share."""
    wall, own = b.wall - a.wall, b.self_cpu - a.self_cpu
    if a.busy is None or b.busy is None:
        return Call(wall, own, None, None, False, inner)
    busy = (b.busy - a.busy) / os.sysconf("SC_CLK_TCK")
    others = max(0.0, busy - own)
    share = others / (wall * a.cores) if wall > 0 else 0.0
    return Call(wall, own, others, share, share > threshold, inner)


@dataclasses.dataclass
class Timing:
    """Result of :func:`measure`. Statistics are per call of ``fn`` and use only the clean samples, unless there was
    none: then ``contended`` is True and they come from the least contended samples (never a mix of both)."""

    median_s: float
    min_s: float
    times_s: list[float]  # per-call times of the samples the statistics use
    self_cpu_s: float  # mean own CPU seconds per call over those samples
    calls: list[Call]  # every timed sample, in order, clean or not
    used: int  # samples the statistics use
    others_share: float | None  # median others_share of the samples the statistics use (None: not measured)
    discarded: int  # contended samples left out (or, when ``contended``, samples beyond ``repeats``)
    contended: bool  # no clean sample: the numbers were taken under load
    measured: bool  # False where contention cannot be measured (not Linux): loadavg only
    threshold: float
    inner: int
    loadavg_before: list[float] | None
    loadavg_after: list[float] | None

    def contention(self) -> dict[str, Any]:
        """The ``contention`` field of a results row."""
        share = self.others_share
        return dict(
            measured=self.measured, contended=self.contended, threshold=self.threshold,
            others_share=None if share is None else round(share, 3),
            others_share_max=max((round(c.others_share, 3) for c in self.calls if c.others_share is not None),
                                 default=None),
            used=self.used, discarded=self.discarded, inner=self.inner,
            loadavg=dict(before=self.loadavg_before, after=self.loadavg_after),
        )  # fmt: skip


def measure(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    max_tries: int | None = None,
    block: Callable[[Any], Any] | None = None,
    threshold: float = CONTENDED_SHARE,
    warmup: int = 1,
    min_sample_s: float = 0.5,
    probe: Callable[[], Sample] | None = None,
) -> Timing:
    """Time ``fn()`` until ``repeats`` clean samples are in or ``max_tries`` (default ``2 × repeats``) were taken.

    ``block(result)`` waits for the result (``jax.block_until_ready`` for asynchronous dispatch) inside the timed
    interval. ``warmup`` untimed calls run first (compilation, caches), then, when the last one took less than
    ``min_sample_s``, one calibration call whose duration sets ``inner``, the calls per sample, so that a sample
    lasts at least ``min_sample_s`` (0: no calibration, one call per sample). ``probe`` is the counter source
    (tests pass a fake one). See :class:`Timing` for what is reported.
    """
    max_tries = max(repeats, 2 * repeats if max_tries is None else max_tries)
    if probe is None:
        cpus = _cpus()
        probe = lambda: sample(cpus)  # noqa: E731

    def run_once():
        r = fn()
        if block is not None:
            block(r)

    t_call = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        run_once()
        t_call = time.perf_counter() - t0
    inner = 1
    if 0 < min_sample_s and t_call < min_sample_s:  # calibrate on one more call (a warm-up call can be slow)
        t0 = time.perf_counter()
        run_once()
        t_call = time.perf_counter() - t0
        if t_call < min_sample_s:
            inner = min(10_000, math.ceil(min_sample_s / max(t_call, 1e-6)))
    load0 = _loadavg()
    calls: list[Call] = []
    measured = True
    while len(calls) < max_tries and sum(not c.contended for c in calls) < repeats:
        a = probe()
        for _ in range(inner):
            run_once()
        b = probe()
        call = interval(a, b, threshold, inner)
        measured = measured and call.others_share is not None
        calls.append(call)
    clean = [c for c in calls if not c.contended]
    contended = not clean
    used = clean if clean else sorted(calls, key=lambda c: c.others_share or 0.0)[:repeats]
    times = [c.wall_s / c.inner for c in used]
    shares = [c.others_share for c in used if c.others_share is not None]
    return Timing(
        median_s=statistics.median(times), min_s=min(times), times_s=times,
        self_cpu_s=statistics.fmean(c.self_cpu_s / c.inner for c in used), calls=calls, used=len(used),
        others_share=statistics.median(shares) if shares else None,
        discarded=len(calls) - len(used), contended=contended, measured=measured, threshold=threshold, inner=inner,
        loadavg_before=load0, loadavg_after=_loadavg(),
    )  # fmt: skip


class Watch:
    """Contention over one whole run that is not repeated (an end-to-end clip): ``with Watch() as w: ...``, then
    ``w.contention()``; ``w.call`` holds the :class:`Call`. Nothing is retried; a contended run is flagged."""

    def __init__(self, threshold: float = CONTENDED_SHARE):
        self.threshold, self.call = threshold, None

    def __enter__(self) -> Watch:
        self.load0, self.a = _loadavg(), sample()
        return self

    def __exit__(self, *exc) -> None:
        self.call, self.load1 = interval(self.a, sample(), self.threshold), _loadavg()

    def contention(self) -> dict[str, Any]:
        c = self.call
        share = None if c.others_share is None else round(c.others_share, 3)
        return dict(
            measured=c.others_share is not None, contended=c.contended, threshold=self.threshold,
            others_share=share, others_share_max=share, used=1, discarded=0, inner=1,
            loadavg=dict(before=self.load0, after=self.load1),
        )  # fmt: skip


def combine(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row's ``contention`` from several timed parts (e.g. encode and decode): the worst share, all discards,
    contended if any part was, and the parts themselves under ``parts``."""
    vals = list(parts.values())
    shares = [p["others_share"] for p in vals if p.get("others_share") is not None]
    maxes = [p["others_share_max"] for p in vals if p.get("others_share_max") is not None]
    return dict(
        measured=all(p["measured"] for p in vals), contended=any(p["contended"] for p in vals),
        threshold=vals[0]["threshold"], others_share=max(shares, default=None),
        others_share_max=max(maxes, default=None), discarded=sum(p["discarded"] for p in vals),
        loadavg=dict(before=vals[0]["loadavg"]["before"], after=vals[-1]["loadavg"]["after"]), parts=parts,
    )  # fmt: skip


def marker(contention: dict[str, Any] | None) -> str:
    """Short text for a printed table: ``others 3%`` when clean, ``CONTENDED others 85%`` when not."""
    if not contention:
        return ""
    if not contention.get("measured"):
        la = (contention.get("loadavg") or {}).get("before")
        return f"load {la[0]:.1f} (contention not measured)" if la else "(contention not measured)"
    share = contention.get("others_share") or 0.0
    return f"{'CONTENDED ' if contention.get('contended') else ''}others {100 * share:.0f}%"


def _proc_ticks() -> dict[int, tuple[str, int]]:
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm, rest = s[s.index("(") + 1 : s.rindex(")")], s[s.rindex(")") + 2 :].split()
        out[int(d)] = (comm, int(rest[11]) + int(rest[12]))  # utime + stime
    return out


def load_snapshot(window_s: float = 0.25, top: int = 3) -> dict[str, Any]:
    """For a results header: load average, cores, others' share of the CPUs over ``window_s`` and the ``top``
    other processes by CPU % over that window (name and pid only; 0 or not Linux: none). Costs ``window_s``."""
    cpus = _cpus()
    snap: dict[str, Any] = dict(loadavg=_loadavg(), cores=len(cpus), cpu_count=os.cpu_count())
    try:
        before = _proc_ticks() if top else {}
    except OSError:
        before = {}
    a = sample(cpus)
    time.sleep(window_s)
    b = sample(cpus)
    call = interval(a, b)
    snap.update(measured=call.others_share is not None, window_s=window_s,
                others_share=None if call.others_share is None else round(call.others_share, 3))  # fmt: skip
    if before:
        hz, me = os.sysconf("SC_CLK_TCK"), os.getpid()
        after = _proc_ticks()
        use = [(after[p][1] - t, p, after[p][0]) for p, (c, t) in before.items() if p in after and p != me]
        use.sort(reverse=True)
        snap["top"] = [
            dict(pid=p, name=name, cpu_percent=round(100 * d / hz / call.wall_s)) for d, p, name in use[:top] if d > 0
        ]
    return snap


def clean(row: dict[str, Any]) -> bool:
    """Whether a results row was measured and found uncontended (rows from before this module: False)."""
    c = row.get("contention") or {}
    return bool(c.get("measured")) and not c.get("contended")


def merge_rows(old: list[dict], new: list[dict], key: Callable[[dict], Any]) -> list[dict]:
    """Same-day rows: earlier rows are kept unless re-measured now, and a clean earlier row is not replaced by a
    contended new one (the new one is dropped, with a printed note)."""
    old_by_key = {key(r): r for r in old}
    kept_new = []
    for r in new:
        o = old_by_key.get(key(r))
        if o is not None and clean(o) and not clean(r):
            why = marker(r.get("contention"))
            print(f"[timing] kept the earlier clean row for {key(r)}: this run's was contended ({why})")
            continue
        kept_new.append(r)
    seen = {key(r) for r in kept_new}
    return [r for r in old if key(r) not in seen] + kept_new
