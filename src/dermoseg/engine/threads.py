"""How many CPU threads inference may use: the CPUs this process can actually run on.

``os.cpu_count()`` reports the machine's cores, not the process's share. On a shared server or in a container
the process is limited by its CPU affinity (taskset, cpusets: :func:`os.sched_getaffinity`) and by a CFS
bandwidth quota (cgroup v2 ``cpu.max``, cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; see the Linux
kernel's Documentation/scheduler/sched-bwc.rst). Starting more compute threads than that over-subscribes the
CPU: each thread is descheduled mid-operation and the others wait for it at the next barrier, which is how one
forward pass grew from 0.11 s to 2.0 s on a busy machine (issue #14). Inference thread pools are also created
non-spinning (:func:`dermoseg.engine.ort_runner.session_options`, ``OMP_WAIT_POLICY=PASSIVE`` in
:mod:`dermoseg`), so idle workers sleep instead of burning CPU that another process needs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quota_v2(text: str | None) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line ``"$MAX $PERIOD"`` (``max`` = unlimited)."""
    if not text:
        return None
    parts = text.split()
    if parts[0] == "max" or len(parts) != 2:
        return None
    return int(parts[0]) / int(parts[1])


def _quota_v1(quota: str | None, period: str | None) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 = unlimited)."""
    if not quota or not period or int(quota) <= 0 or int(period) <= 0:
        return None
    return int(quota) / int(period)


def _own_cgroups(proc_cgroup: str) -> tuple[str | None, str | None]:
    """The process's cgroup v2 path and its v1 ``cpu`` controller path from the text of ``/proc/self/cgroup``."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(base: Path, cgroup_path: str | None) -> list[Path]:
    """``base/<cgroup_path>`` and each parent up to ``base`` (a limit set on any ancestor applies)."""
    if cgroup_path is None:
        return [base]
    parts = [p for p in cgroup_path.split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> float | None:
    """The CFS bandwidth limit on this process in CPUs (e.g. 1.5), or None when there is none.

    Parameters
    ----------
    root : where the cgroup file systems are mounted (``/sys/fs/cgroup``; tests pass a fake tree).
    proc_cgroup : text of ``/proc/self/cgroup`` (read when None).

    Returns
    -------
    The smallest quota/period over the process's cgroup and its ancestors, cgroup v2 (``cpu.max``) and v1
    (``cpu/cpu.cfs_quota_us``, ``cpu,cpuacct/…``) alike; None if unlimited or unreadable. Inside a container
    the process's own cgroup is often mounted as the root, so the root's files count as well.
    """
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup")) or ""
    v2, v1 = _own_cgroups(proc_cgroup)
    limits = [_quota_v2(_read(d / "cpu.max")) for d in _ancestors(root, v2)]
    for mount in ("cpu", "cpu,cpuacct"):
        for d in _ancestors(root / mount, v1):
            limits.append(_quota_v1(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")))
    found = [x for x in limits if x is not None]
    return min(found) if found else None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (rounded up), at least 1."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def inference_threads(requested: int | None = None) -> int:
    """Compute threads for one inference engine.

    Parameters
    ----------
    requested : ``--threads``; None picks :func:`available_cpus`, capped by ``OMP_NUM_THREADS`` when set.

    Returns
    -------
    A thread count ≥ 1.

    Raises
    ------
    ValueError
        If ``requested`` is given and < 1.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        return int(requested)
    n = available_cpus()
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        n = min(n, int(env))
    return n


def configure_torch(threads: int) -> None:
    """Give PyTorch's intra-op pool ``threads`` threads and its inter-op pool one (inference runs one graph at
    a time). The inter-op size can only be set before torch's first parallel work, so a later failure to set
    it is ignored."""
    import torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
