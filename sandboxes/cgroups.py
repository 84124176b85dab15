"""Per-sandbox cgroups: the one limit on process count that holds when the host runs as root.

RLIMIT_NPROC is not enforced for processes whose real uid maps to host root, which is what a
user namespace made by root gives. A pids cgroup (and a memory cgroup for the sandbox as a
whole) closes that gap. Only cgroup v1 controllers mounted writable, or a writable cgroup v2
tree, are used; anything else returns ``None`` and the caller falls back to rlimits.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_GROUP = "agent_rl"


class CgroupSet:
    """The pids (and memory) cgroups of one sandbox."""

    def __init__(self, dirs: list[Path], kind: str) -> None:
        self.dirs = dirs
        self.kind = kind

    def join_current_process(self) -> None:
        """Move the calling process in; called in the child between fork and exec."""
        pid = str(os.getpid())
        for d in self.dirs:
            (d / "cgroup.procs").write_text(pid)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def destroy(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            removed = True
            for d in self.dirs:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    removed = False
            if removed or time.monotonic() > deadline:
                return
            time.sleep(0.005)


def _v1_dir(controller: str) -> Path | None:
    base = _ROOT / controller
    if not (base / "cgroup.procs").exists():
        return None
    group = base / _GROUP
    try:
        group.mkdir(exist_ok=True)
    except OSError:
        return None
    return group if os.access(group, os.W_OK) else None


_swept = False


def _sweep_stale(parent: Path) -> None:
    """Remove empty groups left by processes that died without closing their sandboxes."""
    for d in parent.glob("sb-*"):
        try:
            owner = int(d.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if owner != os.getpid() and not Path(f"/proc/{owner}").exists():
            try:
                d.rmdir()
            except OSError:
                pass


def create(max_procs: int, memory_bytes: int | None) -> CgroupSet | None:
    """Make cgroups for one sandbox, or return None where this host doesn't allow it."""
    global _swept
    if os.geteuid() != 0:
        return None  # an unprivileged user's RLIMIT_NPROC works, and cgroups are not ours
    name = f"sb-{os.getpid()}-{uuid.uuid4().hex[:10]}"
    pids_parent = _v1_dir("pids")
    if not _swept:
        _swept = True
        for controller in ("pids", "memory"):
            parent = _v1_dir(controller)
            if parent is not None:
                _sweep_stale(parent)
    if pids_parent is not None:
        dirs: list[Path] = []
        try:
            d = pids_parent / name
            d.mkdir()
            dirs.append(d)
            (d / "pids.max").write_text(str(max_procs))
            mem_parent = _v1_dir("memory")
            if memory_bytes and mem_parent is not None:
                m = mem_parent / name
                m.mkdir()
                dirs.append(m)
                (m / "memory.limit_in_bytes").write_text(str(memory_bytes))
        except OSError:
            CgroupSet(dirs, "v1").destroy()
            return None
        return CgroupSet(dirs, "v1")
    unified = _ROOT if (_ROOT / "cgroup.controllers").exists() else None
    if unified is not None:
        try:
            parent = unified / _GROUP
            parent.mkdir(exist_ok=True)
            (parent / "cgroup.subtree_control").write_text("+pids +memory")
            d = parent / name
            d.mkdir()
            (d / "pids.max").write_text(str(max_procs))
            if memory_bytes:
                (d / "memory.max").write_text(str(memory_bytes))
            return CgroupSet([d], "v2")
        except OSError:
            return None
    return None
