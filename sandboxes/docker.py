"""The docker backend: one container per sandbox, commands run through ``docker exec``.

The container is made to hold untrusted code, not to be convenient:

- no network (``--network none``: only a loopback interface) unless ``Limits.network``;
- a read-only image root, with the workdir on a private tmpfs *volume* and ``/tmp`` on a
  tmpfs. The workdir is a volume rather than a plain ``--tmpfs`` mount because the engine's
  archive API (``put_archive``/``get_archive``) cannot see into tmpfs mounts, and cannot
  write to a read-only root at all; a tmpfs-backed volume is mounted by the engine itself,
  so files move in and out of it without any process in the container - which still works
  when the code inside has exhausted the process limit;
- an unprivileged uid (1000 by default), every capability dropped, ``no-new-privileges``,
  the engine's default seccomp profile;
- cgroup limits on processes and memory (no swap), rlimits on CPU time, file size and open
  files, and ``oom_score_adj=1000`` so that the host's OOM killer picks sandboxes first;
- a tiny init (the engine's ``docker-init``) as PID 1, so orphans are reaped and zombies
  do not eat into the process limit.

Each call runs under a small POSIX shell wrapper (``_WRAPPER``) that puts the command in its
own process group under coreutils ``timeout -s KILL``, and kills that group when the
command ends: background children cannot hold the output open or outlive the call. Every
process of a call carries ``AGENT_RL_CALL=<id>`` in its environment, so that on a timeout
the processes that left the group (``setsid``) are found and killed as well. The host
keeps its own deadline on top: if a call still hangs past it, the host kills the call's
processes from a second exec, then every process in the sandbox. When leftovers of earlier
calls hold every pid the sandbox may have (so that nothing, not even a kill, can start), the
process limit is raised for a moment to let that kill in. None of this touches the files:
only a container restart, the very last resort, loses the workdir (its tmpfs is remounted).

Output is streamed from the engine and capped on the fly (head and tail kept), so a command
that prints gigabytes costs the host no more memory than the cap.

All docker SDK calls block, so they run in a thread pool of their own; the event loop is
never blocked. The SDK is imported lazily: this module imports without it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import io
import logging
import os
import posixpath
import selectors
import socket
import ssl
import tarfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._agent import OutputCapture
from .base import SANDBOX_ENV, Command, ExecResult, Isolation, Limits, Sandbox, SandboxError, SandboxUnavailable

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "agent-rl/sandbox:latest"
LABEL = "agent-rl"  # every container and volume made here carries LABEL=1
_SETUP_HINT = (
    "Start the engine with `bash scripts/start_dockerd.sh` (as root) and build the images "
    "with `bash scripts/build_images.sh`."
)

# Processes the sandbox itself keeps alive (init, the idle command, one call's wrapper and
# its `timeout`), added on top of Limits.max_procs so the code gets the count it was promised.
_OWN_PROCS = 4
# How long past a call's timeout the host waits before it steps in itself. The in-container
# `timeout` fires at the deadline; the engine may take up to ~2 s to close a finished
# exec's streams.
_HOST_GRACE_S = 3.0
# After the host killed a hung call, how long it waits for the streams to close before it
# escalates.
_KILL_GRACE_S = 3.0
# Extra pids granted for the moment of a recovery, so that the kill can start at all.
_RECOVERY_PIDS = 64
_RECV_BYTES = 256 * 1024
_SEND_BYTES = 64 * 1024
_API_TIMEOUT_S = 60
# Exit statuses 129..159 are how a shell (and the engine) report death by signal 1..31.
_SIGNAL_BASE = 128
_SIGKILL = 9

# `sh -c _WRAPPER agent-rl-exec TIMEOUT ARGV...`, run with AGENT_RL_CALL=<id> in its env.
# - The caller's stdin is moved to fd 3 first: a non-interactive shell gives background jobs
#   /dev/null as their stdin unless told otherwise.
# - `timeout` makes its own process group, so `kill -KILL -$p` afterwards reaches every
#   process of the call that stayed in it (pipelines, `cmd &`), and at the deadline
#   `timeout -s KILL` kills that whole group itself. (dash's kill takes no `--`.)
# - On death by SIGKILL (a timeout, or the OOM killer) processes that left the group with
#   setsid are found by the marker in their environment and killed too.
# - Without coreutils `timeout` (a foreign image) the command runs bare and the host-side
#   guard enforces the deadline.
_WRAPPER = r"""
t=$1; shift
exec 3<&0
if command -v timeout >/dev/null 2>&1; then
  timeout -s KILL "$t" "$@" <&3 3<&- &
else
  "$@" <&3 3<&- &
fi
p=$!
exec 3<&-
wait "$p" 2>/dev/null; s=$?
kill -KILL "-$p" 2>/dev/null
if [ "$s" -eq 137 ]; then
  for f in $(grep -lzx "AGENT_RL_CALL=$AGENT_RL_CALL" /proc/[0-9]*/environ 2>/dev/null); do
    q=${f#/proc/}; q=${q%/environ}
    [ "$q" = "$$" ] || kill -KILL "$q" 2>/dev/null
  done
fi
exit "$s"
"""

# `sh -c _SWEEP agent-rl-sweep CALL_ID`: kill every process carrying that call's marker.
_SWEEP = r"""
for f in $(grep -lzx "AGENT_RL_CALL=$1" /proc/[0-9]*/environ 2>/dev/null); do
  q=${f#/proc/}; q=${q%/environ}
  kill -KILL "$q" 2>/dev/null
done
exit 0
"""

# `sh -c _KILL_ALL`: kill every process in the sandbox except PID 1 (the init), the idle
# command (the oldest child of PID 1; later children are reparented orphans) and itself.
# Builtins only - not one fork - because it must work when no pid is free. It loops because a
# fork bomb forks while it is being killed.
_KILL_ALL = r"""
kids=
read -r kids < /proc/1/task/1/children 2>/dev/null
idle=0
for k in $kids; do
  if [ "$idle" -eq 0 ] || [ "$k" -lt "$idle" ]; then idle=$k; fi
done
i=0
while [ "$i" -lt 50 ]; do
  left=0
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] || [ "$p" = "$idle" ] || [ "$p" = "$$" ] && continue
    [ -e "$d/exe" ] || continue
    kill -KILL "$p" 2>/dev/null && left=1
  done
  [ "$left" = 0 ] && exit 0
  i=$((i + 1))
done
exit 1
"""

_T = TypeVar("_T")

_pool_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """A pool of its own: asyncio's default one has only cores+4 threads, and a rollout
    with dozens of sandboxes each blocked in a long exec would queue behind it."""
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = int(os.environ.get("AGENT_RL_DOCKER_THREADS", "64"))
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, workers), thread_name_prefix="agent-rl-docker"
            )
        return _pool


async def _blocking(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args, **kwargs))


def _import_docker() -> Any:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError as e:
        raise SandboxUnavailable(
            f"the docker Python SDK is not installed ({e}): pip install 'docker>=7' "
            f"(or pip install -e '.[docker]'). {_SETUP_HINT}"
        ) from e
    return docker


def connect(timeout: float = _API_TIMEOUT_S) -> Any:
    """A docker client that has answered a ping, or :class:`SandboxUnavailable` saying why."""
    docker = _import_docker()
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as e:
        raise SandboxUnavailable(f"no Docker engine answers at {where} ({e}). {_SETUP_HINT}") from e
    return client


def engine_status(image: str = DEFAULT_IMAGE, timeout: float = 5.0) -> str:
    """``"ok (...)"`` when sandboxes from ``image`` can start here, else ``"unavailable: why"``
    with what to run. Blocking, and quick: for ``sandboxes.available()`` and ``create("auto")``."""
    try:
        client = connect(timeout)
    except SandboxUnavailable as e:
        return f"unavailable: {e}"
    try:
        version = client.version().get("Version", "?")
        client.images.get(image)
    except Exception as e:
        if type(e).__name__ == "ImageNotFound":
            return f"unavailable: image {image} is missing; build it with `bash scripts/build_images.sh`"
        return f"unavailable: the Docker engine did not answer properly ({e})"
    finally:
        client.close()
    return f"ok (docker engine {version}, image {image})"


class _Demux:
    """Splits the engine's multiplexed exec stream (8-byte frame headers) into two captures,
    passing payload through as it arrives rather than waiting for whole frames."""

    def __init__(self, out: OutputCapture, err: OutputCapture) -> None:
        self.out, self.err = out, err
        self.hdr = bytearray()
        self.left = 0
        self.sink = out

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n:
            if self.left == 0:
                take = view[i : i + 8 - len(self.hdr)]
                self.hdr += take
                i += len(take)
                if len(self.hdr) < 8:
                    return
                self.sink = self.err if self.hdr[0] == 2 else self.out
                self.left = int.from_bytes(self.hdr[4:8], "big")
                self.hdr.clear()
                continue
            take = view[i : i + self.left]
            self.sink.add(take)
            i += len(take)
            self.left -= len(take)


@dataclasses.dataclass
class _Run:
    """One finished call, with its output still as bytes."""

    out: OutputCapture
    err: OutputCapture
    exit_code: int
    timed_out: bool
    duration_s: float
    note: str = ""


def _out_of_processes(run: _Run) -> bool:
    """Whether the call failed because the sandbox could not start a process at all: the
    wrapper itself could not fork, or the runtime could not create the exec's process."""
    err = bytes(run.err.head[:512])
    out = bytes(run.out.head[:512])
    if run.exit_code == 2 and err.startswith(b"agent-rl-exec: ") and b"Cannot fork" in err:
        return True
    both = (out + err).lower()
    return (run.exit_code in (126, 127) and b"oci runtime exec failed" in both
            and (b"resource temporarily unavailable" in both or b"fork" in both))


def _raw_socket(sock: Any) -> Any:
    """The real socket under what ``exec_start(socket=True)`` returns (a SocketIO on unix
    and plain tcp, the socket itself on TLS)."""
    return getattr(sock, "_sock", sock)


def _shutdown_write(sock: Any) -> None:
    """Half-close: the engine turns it into EOF on the process's stdin."""
    try:
        if hasattr(sock, "shutdown_write"):  # a paramiko channel (ssh:// engines)
            sock.shutdown_write()
        else:
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _container_path(workdir: str, path: str) -> str:
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValueError(f"invalid path {path!r}")
    return posixpath.normpath(posixpath.join(workdir, path))


def _mb(n: float) -> int:
    return int(n) * 1024 * 1024


class DockerSandbox(Sandbox):
    """A sandbox in a docker container; see the module docstring for what holds the code.

    ``user`` is a numeric ``uid:gid`` so that any image works, whether or not it has a passwd
    entry for it. ``disk_mb`` sizes the tmpfs of the workdir and of ``/tmp`` (default: four
    times ``max_file_mb``, at least 1 GiB; memory is only used for what is written).
    ``cpus`` caps CPU share (e.g. 1.0 = one core). ``env`` is added to every call's
    environment; ``labels`` to the container's, next to ``agent-rl=1``.

    The workdir starts empty: it is a fresh tmpfs, which hides whatever the image has at that
    path. ``seed`` names a directory of the image (say ``/opt/task``, a repository baked in)
    whose contents are copied into the workdir when the sandbox starts.
    """

    def __init__(
        self,
        limits: Limits = Limits(),
        image: str = DEFAULT_IMAGE,
        workdir: str = "/workspace",
        *,
        user: str = "1000:1000",
        cpus: float | None = None,
        disk_mb: int | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        seed: str | None = None,
    ) -> None:
        if not workdir.startswith("/") or posixpath.normpath(workdir) in ("/", "/tmp"):
            raise ValueError(f"workdir must be an absolute path other than / and /tmp, got {workdir!r}")
        self.limits = limits
        self.image = image
        self.workdir = posixpath.normpath(workdir)
        self.user = user
        self.cpus = cpus
        self.disk_mb = disk_mb or max(4 * limits.max_file_mb, 1024)
        self.env = dict(env or {})
        self.labels = {**(labels or {}), LABEL: "1"}
        if seed is not None and not seed.startswith("/"):
            raise ValueError(f"seed must be an absolute path in the image, got {seed!r}")
        self.seed = seed
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or not (gid or uid).isdigit():
            # Numeric, so it means the same in any image, with or without a passwd entry.
            raise ValueError(f"user must be a numeric 'uid' or 'uid:gid', got {user!r}")
        if uid == "0":
            raise ValueError("the sandbox never runs code as root (user '0')")
        self._uid, self._gid = uid, gid or uid
        self._client: Any = None
        self._container: Any = None
        self._volume: Any = None
        self._has_init = True
        self._dead = False
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def isolation(self) -> Isolation:
        notes = (
            f"image {self.image}; read-only root, tmpfs workdir and /tmp; uid {self._uid}, all "
            "capabilities dropped, no-new-privileges, default seccomp; no user namespace (uid "
            f"{self._uid} inside is uid {self._uid} on the host)"
        )
        if not self._has_init:
            notes += "; no init process: orphaned zombies are not reaped"
        return Isolation(
            backend="docker",
            namespaces=("mount", "pid", "net", "ipc", "uts"),
            network_isolated=not self.limits.network,
            filesystem_isolated=True,
            process_limit="cgroup",
            notes=notes,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def alive(self) -> bool:
        """Started, not closed, and not known to have died (no engine round trip)."""
        return self._container is not None and not self._closed and not self._dead

    @property
    def container_id(self) -> str | None:
        return self._container.id if self._container is not None else None

    async def start(self) -> "DockerSandbox":
        if self._closed:
            raise SandboxError("the sandbox is closed")
        async with self._start_lock:
            if self._container is None:
                await _blocking(self._start_sync)
        return self

    def _start_sync(self) -> None:
        client = connect()
        docker = _import_docker()
        try:
            client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(
                f"docker image {self.image!r} is not present. Build it with `bash scripts/build_images.sh` "
                "(it needs no registry)."
            ) from None
        except docker.errors.APIError as e:
            raise SandboxUnavailable(f"the Docker engine failed to look up image {self.image!r}: {e}") from e

        name = f"agent-rl-{uuid.uuid4().hex[:12]}"
        volume = None
        container = None
        try:
            # A tmpfs the engine mounts itself: size-capped, in memory, gone with the volume,
            # and reachable by the archive API (a --tmpfs mount is not).
            volume = client.volumes.create(
                name=f"{name}-work",
                driver="local",
                driver_opts={
                    "type": "tmpfs",
                    "device": "tmpfs",
                    "o": f"size={self.disk_mb}m,uid={self._uid},gid={self._gid},mode=0755,nosuid,nodev",
                },
                labels=self.labels,
            )
            container = self._create_container(client, name, volume.name, init=True)
            try:
                container.start()
            except docker.errors.APIError as e:
                if "init" not in str(e).lower():
                    raise
                # An engine without docker-init: run bare rather than not at all.
                container.remove(force=True)
                container = self._create_container(client, name, volume.name, init=False)
                container.start()
                self._has_init = False
        except SandboxError:
            raise
        except Exception as e:
            _remove(container, volume)
            raise SandboxError(f"could not start a container from {self.image!r}: {e}") from e
        self._client, self._container, self._volume = client, container, volume
        # A sandbox dropped without close() must not leave a container behind; this runs at
        # garbage collection or, at the latest, at interpreter exit.
        self._finalizer = weakref.finalize(self, _remove, container, volume)
        if self.seed:
            r = container.exec_run(["cp", "-R", "-p", "--", f"{self.seed}/.", self.workdir + "/"], user=self.user)
            if r.exit_code != 0:
                self._finalizer()
                self._closed = True
                raise SandboxError(f"could not copy {self.seed} of {self.image!r} into the workdir: "
                                   f"{r.output.decode(errors='replace').strip()}")

    def _create_container(self, client: Any, name: str, volume: str, *, init: bool) -> Any:
        docker = _import_docker()
        lim = self.limits
        cpu_s = max(1, int(lim.cpu_s + 0.999))
        kwargs: dict[str, Any] = dict(
            image=self.image,
            command=["sleep", "infinity"],
            name=name,
            hostname="sandbox",
            user=self.user,
            working_dir=self.workdir,
            labels=self.labels,
            environment={**SANDBOX_ENV, "HOME": self.workdir, "TMPDIR": "/tmp"},
            network_mode="bridge" if lim.network else "none",
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.disk_mb}m,mode=1777"},
            mounts=[docker.types.Mount(self.workdir, volume, type="volume")],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=lim.max_procs + _OWN_PROCS,
            mem_limit=f"{lim.memory_mb}m",
            memswap_limit=f"{lim.memory_mb}m",
            oom_score_adj=1000,
            ipc_mode="private",
            init=init,
            ulimits=[
                docker.types.Ulimit(name="nofile", soft=4096, hard=4096),
                docker.types.Ulimit(name="fsize", soft=_mb(lim.max_file_mb), hard=_mb(lim.max_file_mb)),
                # Per process, like the local backend: SIGXCPU at the soft limit, SIGKILL at hard.
                docker.types.Ulimit(name="cpu", soft=cpu_s, hard=cpu_s + 1),
                docker.types.Ulimit(name="core", soft=0, hard=0),
            ],
            detach=True,
        )
        if self.cpus:
            kwargs["nano_cpus"] = int(self.cpus * 1e9)
        return client.containers.create(**kwargs)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Wait for a start in progress, so that what it made is removed too.
        async with self._start_lock:
            pass
        if self._finalizer is not None:
            await _blocking(self._finalizer)  # runs _remove once; later calls are no-ops

    async def reset(self) -> None:
        """Kill every process in the sandbox and empty its workdir and /tmp (for reuse)."""
        await self._ready()
        if not await _blocking(self._kill_all_sync):
            await _blocking(self._container.restart, timeout=0)
        r = await self._exec_once(
            ["/bin/sh", "-c", 'find "$1" /tmp -mindepth 1 -delete', "agent-rl-reset", self.workdir], 60.0, None, None,
            cap=4096,
        )
        if r.exit_code != 0:
            raise SandboxError(f"could not empty {self.workdir} and /tmp: {r.stderr.strip()}")

    async def ping(self) -> bool:
        """Whether the container is still running."""
        if self._closed or self._container is None:
            return False
        try:
            await _blocking(self._container.reload)
        except Exception:
            self._dead = True
            return False
        self._dead = self._container.status != "running"
        return not self._dead

    async def _ready(self) -> Any:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if self._container is None:
            await self.start()
        return self._container

    # ------------------------------------------------------------------ exec

    async def exec(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        if isinstance(cmd, str):
            argv = ["/bin/sh", "-c", cmd]
        else:
            argv = list(cmd)
            if not argv or not all(isinstance(a, str) for a in argv):
                raise ValueError(f"cmd must be a string or a non-empty list of strings, got {cmd!r}")
        t = float(timeout if timeout is not None else self.limits.wall_s)
        if t <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        await self._ready()
        data = stdin.encode() if isinstance(stdin, str) else bytes(stdin) if stdin is not None else None
        return await self._exec_once(argv, t, data, env, cap=self.limits.max_output_bytes)

    async def _exec_once(self, argv: list[str], t: float, stdin: bytes | None,
                         env: Mapping[str, str] | None, *, cap: int) -> ExecResult:
        call_env = {**self.env, **(env or {})}
        for k in call_env:
            if not k or "=" in k or "\x00" in k:
                raise ValueError(f"invalid environment variable name {k!r}")
        call_id = uuid.uuid4().hex
        call_env["AGENT_RL_CALL"] = call_id  # last: a caller cannot override the marker
        return await _blocking(self._exec_sync, argv, t, stdin, call_env, call_id, cap)

    def _exec_sync(self, argv: list[str], t: float, stdin: bytes | None, env: dict[str, str],
                   call_id: str, cap: int) -> ExecResult:
        run = self._run_sync(argv, t, stdin, env, call_id, cap)
        return ExecResult(
            stdout=run.out.text(),
            stderr=run.err.text() + run.note,
            exit_code=run.exit_code,
            timed_out=run.timed_out,
            duration_s=run.duration_s,
            truncated=run.out.truncated or run.err.truncated,
        )

    def _run_sync(self, argv: list[str], t: float, stdin: bytes | None, env: dict[str, str],
                  call_id: str, cap: int) -> "_Run":
        run = self._run_once(argv, t, stdin, env, call_id, cap)
        if _out_of_processes(run):
            # Processes left running by earlier calls (they left their process group) hold
            # every pid the sandbox may have: nothing can start any more, not even a kill.
            # The command is not run again - it may have run in part - the caller sees why
            # it failed and can retry.
            log.warning("docker sandbox %s: process limit used up by leftovers; killing them",
                        self._container.id[:12])
            how = self._recover_sync()
            run.note += ("\n[sandbox] the sandbox's process limit was used up by processes still running from "
                         f"earlier commands, so nothing could start. {how} Run the command again.\n")
        return run

    def _kill_all_sync(self) -> bool:
        """Kill every process of the sandbox but its init, keeping the files. Blocking."""
        api = self._client.api
        url = f"{api.base_url}/v{api.api_version}/containers/{self._container.id}/update"
        limit = self.limits.max_procs + _OWN_PROCS
        raised = False
        try:
            # The SDK's update() has no pids limit; the engine's API does (1.40+).
            api.post(url, json={"PidsLimit": limit + _RECOVERY_PIDS}).raise_for_status()
            raised = True
        except Exception as e:
            log.info("could not raise the pids limit of %s for recovery: %s", self._container.id[:12], e)
        try:
            r = self._container.exec_run(["/bin/sh", "-c", _KILL_ALL], user=self.user,
                                         environment={"AGENT_RL_CALL": "killer"})
            return r.exit_code == 0
        except Exception as e:
            log.warning("could not kill the processes of %s: %s", self._container.id[:12], e)
            return False
        finally:
            if raised:
                try:
                    api.post(url, json={"PidsLimit": limit}).raise_for_status()
                except Exception as e:  # pragma: no cover - the engine itself is in trouble
                    log.warning("could not restore the pids limit of %s: %s", self._container.id[:12], e)

    def _recover_sync(self) -> str:
        """Free a wedged sandbox; says what was done, for the caller's output."""
        if self._kill_all_sync():
            return "Every process in the sandbox was killed to recover it; the files are kept."
        log.warning("docker sandbox %s: kill failed; restarting the container", self._container.id[:12])
        try:
            self._container.restart(timeout=0)
        except Exception as e:
            raise SandboxError(f"the sandbox is wedged and could not be restarted: {e}") from e
        return "The sandbox had to be restarted: every process was killed and the workdir and /tmp are empty."

    def _run_once(self, argv: list[str], t: float, stdin: bytes | None, env: dict[str, str],
                  call_id: str, cap: int) -> "_Run":
        docker = _import_docker()
        api = self._client.api
        cid = self._container.id
        started = time.monotonic()
        out, err = OutputCapture(cap), OutputCapture(cap)
        # `timeout 0` would mean no timeout at all: never round down to it.
        full = ["/bin/sh", "-c", _WRAPPER, "agent-rl-exec", f"{max(t, 0.001):.3f}", *argv]
        try:
            exec_id = api.exec_create(
                cid, full, stdout=True, stderr=True, stdin=True, tty=False,
                environment=[f"{k}={v}" for k, v in env.items()], workdir=self.workdir, user=self.user,
            )["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except docker.errors.NotFound as e:
            self._dead = True
            raise SandboxError(f"the sandbox container is gone: {e}") from e
        except docker.errors.APIError as e:
            if self._container_state() != "running":
                self._dead = True
                raise SandboxError(f"the sandbox container is not running ({self._describe_death()}): {e}") from e
            # The container is up but could not start a process: most likely the code's own
            # processes fill the process limit. That is the code's doing, so it is a result.
            err.add(f"[sandbox] could not start the command: {e.explanation or e}\n".encode())
            return _Run(out, err, 126, False, time.monotonic() - started)

        guard_fired = False
        note = ""
        demux = _Demux(out, err)  # one for the whole stream: a pause may fall mid-frame
        try:
            eof = self._pump(sock, stdin, demux, started + t + _HOST_GRACE_S)
            if not eof:
                # The in-container timeout did not end the call: kill what carries its marker.
                guard_fired = True
                self._sweep(call_id)
                eof = self._pump(sock, None, demux, time.monotonic() + _KILL_GRACE_S)
            if not eof:
                # Its processes shed the marker (env -i) and still hold the output open.
                log.warning("docker sandbox %s: call %s outlived its sweep; killing everything", cid[:12], call_id)
                how = self._recover_sync()
                note = f"\n[sandbox] the command's processes would not die. {how}\n"
        finally:
            for s_ in (sock, _raw_socket(sock)):
                try:
                    s_.close()
                except OSError:
                    pass
        duration = time.monotonic() - started
        code = self._exit_code(exec_id)
        timed_out = guard_fired or (code == _SIGNAL_BASE + _SIGKILL and duration >= t)
        if code is None:  # still running after all that: treat as killed
            code = _SIGNAL_BASE + _SIGKILL
        if _SIGNAL_BASE < code < _SIGNAL_BASE + 32:
            code = -(code - _SIGNAL_BASE)
        return _Run(out, err, code, timed_out, duration, note)

    def _pump(self, sock: Any, stdin: bytes | None, demux: _Demux, deadline: float) -> bool:
        """Send stdin and read output until EOF (True) or the deadline (False).

        One thread, one selector: writing stdin and reading output must interleave, or a
        command that prints before it has read all its input deadlocks against us.
        """
        raw = _raw_socket(sock)
        pending = memoryview(stdin) if stdin else None
        if pending is None:
            _shutdown_write(raw)
        raw.setblocking(False)
        sel = selectors.DefaultSelector()
        try:
            sel.register(raw, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending is not None else 0))
            while True:
                # TLS buffers records inside the socket object, where select cannot see them.
                if isinstance(raw, ssl.SSLSocket) and raw.pending():
                    events = [(None, selectors.EVENT_READ)]
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    events = sel.select(left)
                for _, mask in events:
                    if mask & selectors.EVENT_WRITE and pending is not None:
                        try:
                            n = raw.send(pending[:_SEND_BYTES])
                            pending = pending[n:]
                        except (BlockingIOError, ssl.SSLWantWriteError, InterruptedError):
                            n = 0
                        except OSError:
                            pending = pending[:0]  # the process exited without reading it all
                        if not pending:
                            pending = None
                            _shutdown_write(raw)
                            sel.modify(raw, selectors.EVENT_READ)
                    if mask & selectors.EVENT_READ:
                        try:
                            data = raw.recv(_RECV_BYTES)
                        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
                            continue
                        except OSError:
                            return True
                        if not data:
                            return True
                        demux.feed(data)
        finally:
            sel.close()

    def _sweep(self, call_id: str) -> None:
        try:
            self._container.exec_run(["/bin/sh", "-c", _SWEEP, "agent-rl-sweep", call_id], user=self.user,
                                     environment={"AGENT_RL_CALL": "sweeper"})
        except Exception as e:
            log.warning("docker sandbox: could not sweep call %s: %s", call_id, e)

    def _exit_code(self, exec_id: str) -> int | None:
        # The engine may report the exec as running for a moment after its streams close.
        for _ in range(40):
            try:
                info = self._client.api.exec_inspect(exec_id)
            except Exception:
                return None
            if not info.get("Running"):
                return info.get("ExitCode")
            time.sleep(0.05)
        return None

    def _container_state(self) -> str:
        try:
            self._container.reload()
            return str(self._container.status)
        except Exception:
            return "gone"

    def _describe_death(self) -> str:
        try:
            state = self._container.attrs.get("State", {})
        except Exception:
            return "removed"
        if state.get("OOMKilled"):
            return "killed by the out-of-memory killer"
        return f"status {state.get('Status')}, exit code {state.get('ExitCode')}"

    # ------------------------------------------------------------------ files

    def _in_workdir(self, path: str) -> bool:
        return path == self.workdir or path.startswith(self.workdir + "/")

    async def write_file(self, path: str, data: str | bytes) -> None:
        full = _container_path(self.workdir, path)
        raw = data.encode() if isinstance(data, str) else bytes(data)
        await self._ready()
        if self._in_workdir(full) and full != self.workdir:
            await _blocking(self._put_sync, full, raw)
            return
        # Outside the workdir volume (e.g. /tmp) the archive API cannot reach: go through a
        # process, with the sandbox user's rights.
        r = await self._exec_once(
            ["/bin/sh", "-c", 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"', "agent-rl-write", full],
            60.0, raw, {"LC_ALL": "C"}, cap=4096,
        )
        if not r.ok:
            _raise_for_file_error(full, r.stderr)

    async def read_file(self, path: str) -> bytes:
        full = _container_path(self.workdir, path)
        await self._ready()
        if self._in_workdir(full):
            data = await _blocking(self._get_sync, full)
            if data is not None:
                return data
        # Outside the workdir, or a symlink: read it the way the code inside would, with its
        # rights, and under a deadline (the path may be a FIFO that never ends).
        limit = _mb(self.limits.max_file_mb) * 4
        call_id = uuid.uuid4().hex
        run = await _blocking(self._run_sync, ["cat", "--", full], 60.0, None,
                              {"LC_ALL": "C", "AGENT_RL_CALL": call_id}, call_id, limit + 1)
        if run.exit_code != 0 or run.timed_out:
            _raise_for_file_error(full, run.err.text() or ("timed out" if run.timed_out else ""))
        if run.out.truncated:
            raise OSError(f"{full}: larger than {limit} bytes; read it in parts with exec")
        return bytes(run.out.head) + bytes(run.out.tail)

    def _put_sync(self, full: str, data: bytes) -> None:
        docker = _import_docker()
        rel = posixpath.relpath(full, self.workdir)
        now = time.time()
        uid, gid = int(self._uid), int(self._gid)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            # Parent directories go in explicitly: ones the engine makes on its own are root's,
            # and the code (uid 1000) could not write to them.
            parts = rel.split("/")[:-1]
            for i in range(len(parts)):
                d = tarfile.TarInfo("/".join(parts[: i + 1]))
                d.type, d.mode, d.uid, d.gid, d.mtime = tarfile.DIRTYPE, 0o755, uid, gid, now
                tar.addfile(d)
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o644, uid, gid, now
            tar.addfile(info, io.BytesIO(data))
        try:
            self._container.put_archive(self.workdir, buf.getvalue())
        except docker.errors.NotFound as e:
            raise SandboxError(f"the sandbox container is gone: {e}") from e
        except docker.errors.APIError as e:
            msg = str(e.explanation or e)
            if "not a directory" in msg.lower():
                raise NotADirectoryError(f"{full}: {msg}") from e
            raise OSError(f"{full}: could not write: {msg}") from e

    def _get_sync(self, full: str) -> bytes | None:
        """The file's bytes through the archive API; None when it is a symlink."""
        docker = _import_docker()
        try:
            stream, stat = self._container.get_archive(full)
        except docker.errors.NotFound as e:
            if self._container_state() == "gone":
                raise SandboxError(f"the sandbox container is gone: {e}") from e
            raise FileNotFoundError(f"{full}: no such file in the sandbox") from None
        except docker.errors.APIError as e:
            raise OSError(f"{full}: could not read: {e.explanation or e}") from e
        mode = int(stat.get("mode", 0))
        if stat.get("linkTarget"):
            for _ in stream:  # drain so the connection is reusable
                pass
            return None
        if mode & (1 << 31):  # Go's os.ModeDir
            for _ in stream:
                pass
            raise IsADirectoryError(f"{full}: is a directory")
        with tarfile.open(fileobj=_ChunkReader(stream), mode="r|") as tar:
            for member in tar:
                f = tar.extractfile(member)
                if f is not None:
                    return f.read()
        raise OSError(f"{full}: the engine returned an empty archive")


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks, for tarfile's streaming mode."""

    def __init__(self, chunks: Any) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _raise_for_file_error(path: str, stderr: str) -> None:
    text = stderr.strip()
    low = text.lower()
    if "no such file" in low:
        raise FileNotFoundError(f"{path}: {text}")
    if "permission denied" in low or "read-only file system" in low:
        raise PermissionError(f"{path}: {text}")
    if "is a directory" in low:
        raise IsADirectoryError(f"{path}: {text}")
    if "not a directory" in low:
        raise NotADirectoryError(f"{path}: {text}")
    raise OSError(f"{path}: {text or 'failed'}")


def _remove(container: Any, volume: Any) -> None:
    """Remove a sandbox's container, then its volume; tolerant of either being gone."""
    if container is not None:
        try:
            container.remove(force=True, v=True)
        except Exception as e:
            if "no such container" not in str(e).lower() and "404" not in str(e):
                log.warning("could not remove container %s: %s", getattr(container, "id", "?")[:12], e)
    if volume is not None:
        # The engine may still hold the volume for a moment after the container is gone.
        for attempt in range(20):
            try:
                volume.remove(force=True)
                return
            except Exception as e:
                if "no such volume" in str(e).lower() or "404" in str(e):
                    return
                if attempt == 19:
                    log.warning("could not remove volume %s: %s", getattr(volume, "name", "?"), e)
                time.sleep(0.05)


def remove_all(labels: Mapping[str, str] | None = None) -> int:
    """Remove every container and volume labelled ``agent-rl=1`` (and ``labels``): the
    clean-up after a crashed run. Returns how many containers were removed. Blocking."""
    client = connect()
    filters = [f"{LABEL}=1", *(f"{k}={v}" for k, v in (labels or {}).items())]
    n = 0
    for c in client.containers.list(all=True, filters={"label": filters}):
        _remove(c, None)
        n += 1
    for v in client.volumes.list(filters={"label": filters}):
        _remove(None, v)
    return n
