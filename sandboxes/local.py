"""The local backend: bubblewrap namespaces, or rlimits alone where bwrap cannot run.

One sandbox is one long-lived agent process (``_agent.py``) inside bubblewrap. Commands,
one-shot Python runs and persistent sessions are all forked from it, so a call pays a
fork, not a sandbox start-up.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import bwrap as _bwrap
from . import cgroups
from .base import SANDBOX_ENV, Command, ExecResult, Isolation, Limits, Sandbox, SandboxError
from .channel import AgentChannel

log = logging.getLogger(__name__)

WORKDIR = "/workspace"
_START_TIMEOUT_S = 30.0
_HOST_GRACE_S = 10.0  # the agent enforces timeouts; the host waits this much longer before giving up


class WeakIsolationWarning(UserWarning):
    """Code runs without namespaces: it can read the host's files and reach the network."""


def _default_env(workdir: str, python: str) -> dict[str, str]:
    bindir = os.path.dirname(python)
    return {
        **SANDBOX_ENV,
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": "/tmp" if workdir == WORKDIR else os.path.join(workdir, ".tmp"),
    }


class LocalSandbox(Sandbox):
    """A sandbox on this host.

    ``use_bwrap=None`` uses bubblewrap when it works here and otherwise falls back to
    rlimits and a private directory, with a :class:`WeakIsolationWarning`.
    ``preload`` names modules imported once in the agent so one-shot Python runs start with
    them loaded. ``ro_binds`` are extra host paths made visible read-only (bwrap only).
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        use_bwrap: bool | None = None,
        python: str | None = None,
        preload: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ro_binds: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.preload = tuple(preload)
        self.extra_env = dict(env or {})
        self.ro_binds = tuple(ro_binds)
        self._want_bwrap = use_bwrap
        self._proc: asyncio.subprocess.Process | None = None
        self._chan: AgentChannel | None = None
        self._cg: cgroups.CgroupSet | None = None
        self._hostdir: str | None = None
        self._isolation: Isolation | None = None
        self._stderr_tail = bytearray()
        self._stderr_task: asyncio.Task | None = None
        self._closed = False
        self._start_lock: asyncio.Lock | None = None
        self.workdir = WORKDIR

    # ---- lifecycle --------------------------------------------------------------------

    @property
    def isolation(self) -> Isolation:
        if self._isolation is None:
            raise SandboxError("the sandbox has not been started")
        return self._isolation

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def alive(self) -> bool:
        return self._chan is not None and self._chan.alive and not self._closed

    async def start(self) -> "LocalSandbox":
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._closed:
                raise SandboxError("the sandbox is closed; create a new one")
            if self._chan is None:
                await self._spawn()
        return self

    def _plan(self) -> tuple[list[str], dict[str, str], Isolation]:
        lim = self.limits
        bw_path, why = (None, "bubblewrap disabled by use_bwrap=False")
        if self._want_bwrap is not False:
            bw_path, why = _bwrap.probe()
            if bw_path is None and self._want_bwrap:
                raise SandboxError(f"use_bwrap=True but {why}")
        if bw_path is not None:
            self.workdir = WORKDIR
            memory_bytes = (lim.memory_mb * 2 + 256) * 1024 * 1024
            self._cg = cgroups.create(lim.max_procs + 4, memory_bytes)
            uses_rlimit_nproc = self._cg is None and os.geteuid() != 0
            cfg = self._agent_cfg(rlimit_nproc=uses_rlimit_nproc, own_pid_ns=True, scratch=["/tmp"])
            argv = _bwrap.build_argv(
                bw_path, python=self.python, workdir=self.workdir, network=lim.network,
                tmpfs_bytes=lim.max_file_mb * 4 * 1024 * 1024, ro_binds=self.ro_binds,
                agent_args=[cfg],
            )
            proc_limit = "cgroup" if self._cg else ("rlimit" if uses_rlimit_nproc else "none")
            notes = "" if proc_limit != "none" else "no cgroup could be made and RLIMIT_NPROC does not bind root: fork bombs are bounded only by the wall timeout"
            iso = Isolation("bwrap", ("user", "pid", "net", "ipc", "uts", "mount", "cgroup")
                            if not lim.network else ("user", "pid", "ipc", "uts", "mount", "cgroup"),
                            network_isolated=not lim.network, filesystem_isolated=True,
                            process_limit=proc_limit, notes=notes)
            return argv, _default_env(self.workdir, self.python), iso
        # Fallback: a private directory and rlimits. Honest about what that does not stop.
        self._hostdir = tempfile.mkdtemp(prefix="agent-rl-sb-")
        self.workdir = self._hostdir
        os.makedirs(os.path.join(self._hostdir, ".tmp"), exist_ok=True)
        cfg = self._agent_cfg(rlimit_nproc=True, own_pid_ns=False, scratch=[])
        msg = (f"agent-rl sandbox running WITHOUT isolation ({why}): code can read host files and "
               "reach the network. Install bubblewrap (apt-get install bubblewrap) for real isolation.")
        warnings.warn(msg, WeakIsolationWarning, stacklevel=3)
        log.warning(msg)
        iso = Isolation("rlimits", (), network_isolated=False, filesystem_isolated=False,
                        process_limit="rlimit", notes=why)
        agent = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_agent.py")
        return [self.python, "-I", "-u", agent, cfg], _default_env(self.workdir, self.python), iso

    def _agent_cfg(self, *, rlimit_nproc: bool, own_pid_ns: bool, scratch: list[str]) -> str:
        import json

        lim = self.limits
        env = {**_default_env(self.workdir, self.python), **self.extra_env}
        return json.dumps({
            "workdir": self.workdir,
            "env": env,
            "preload": list(self.preload),
            "own_pid_ns": own_pid_ns,
            "limits": {"cpu_s": lim.cpu_s, "memory_mb": lim.memory_mb, "max_procs": lim.max_procs,
                       "max_file_mb": lim.max_file_mb, "rlimit_nproc": rlimit_nproc,
                       "scratch_dirs": scratch},
        })

    async def _spawn(self) -> None:
        argv, env, iso = self._plan()
        cg = self._cg
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                preexec_fn=cg.join_current_process if cg else None,
                start_new_session=True,
                limit=1 << 24,
            )
        except OSError as e:
            await self._cleanup()
            raise SandboxError(f"could not start the sandbox: {e}") from e
        assert self._proc.stdout and self._proc.stdin and self._proc.stderr
        self._stderr_task = asyncio.create_task(self._collect_stderr(self._proc.stderr))
        self._chan = AgentChannel(self._proc.stdout, self._proc.stdin)
        try:
            await self._chan.ready(_START_TIMEOUT_S)
        except (SandboxError, asyncio.TimeoutError) as e:
            await asyncio.sleep(0.05)
            detail = self._stderr_tail.decode(errors="replace").strip()
            await self._cleanup()
            raise SandboxError(f"the sandbox failed to start: {detail or e}") from None
        self._isolation = iso

    async def _collect_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(4096):
            self._stderr_tail += chunk
            del self._stderr_tail[:-4096]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._cleanup()

    async def _cleanup(self) -> None:
        if self._chan is not None:
            await self._chan.aclose()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                log.error("sandbox process %d did not die", proc.pid)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
        if self._cg is not None:
            await asyncio.to_thread(self._cg.destroy)
            self._cg = None
        if self._hostdir is not None:
            shutil.rmtree(self._hostdir, ignore_errors=True)
            self._hostdir = None

    def __del__(self) -> None:
        # A sandbox dropped without close(): its processes and cgroups must not outlive it.
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, 9)
            except (ProcessLookupError, PermissionError, OSError):
                pass
        cg = getattr(self, "_cg", None)
        if cg is not None:
            try:
                cg.destroy(timeout_s=0.5)
            except OSError:
                pass

    # ---- calls ------------------------------------------------------------------------

    async def _request(self, op: str, wait_s: float, **fields: Any) -> dict:
        if self._chan is None:
            await self.start()
        assert self._chan is not None
        if self._closed:
            raise SandboxError("the sandbox is closed")
        reply = await self._chan.request(op, wait_s=wait_s, **fields)
        if not reply.get("ok"):
            raise SandboxError(f"sandbox agent refused {op!r}: {reply.get('error')}")
        return reply

    def _call_fields(self, timeout: float | None, stdin: str | bytes | None,
                     env: Mapping[str, str] | None) -> tuple[float, dict]:
        t = float(timeout if timeout is not None else self.limits.wall_s)
        if t <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        fields: dict[str, Any] = {"timeout": t, "max_output": self.limits.max_output_bytes}
        if stdin:
            data = stdin.encode() if isinstance(stdin, str) else bytes(stdin)
            fields["stdin"] = base64.b64encode(data).decode()
        if env:
            fields["env"] = {str(k): str(v) for k, v in env.items()}
        return t, fields

    @staticmethod
    def _result(reply: dict) -> ExecResult:
        return ExecResult(stdout=reply["stdout"], stderr=reply["stderr"], exit_code=reply["exit_code"],
                          timed_out=reply["timed_out"], duration_s=reply["duration_s"],
                          truncated=reply["truncated"])

    async def exec(self, cmd: Command, *, timeout: float | None = None, stdin: str | bytes | None = None,
                   env: Mapping[str, str] | None = None) -> ExecResult:
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
        if not argv:
            raise ValueError("empty command")
        t, fields = self._call_fields(timeout, stdin, env)
        return self._result(await self._request("exec", t + _HOST_GRACE_S, argv=argv, **fields))

    async def run_python(self, code: str, *, timeout: float | None = None, stdin: str | bytes | None = None,
                         env: Mapping[str, str] | None = None, reset_after: bool = False) -> ExecResult:
        """Run ``code`` as a one-shot script in a process forked from the warm agent.

        Same semantics as ``python -c code`` (``__main__``, exit codes, tracebacks on
        stderr) without paying an interpreter start. ``reset_after`` wipes the sandbox's
        files and processes once the run ends, so the next run sees nothing of this one.
        """
        t, fields = self._call_fields(timeout, stdin, env)
        reply = await self._request("pyexec", t + _HOST_GRACE_S, code=code, reset_after=reset_after, **fields)
        return self._result(reply)

    async def repl_run(self, sid: str, code: str, *, timeout: float | None = None) -> dict:
        t, fields = self._call_fields(timeout, None, None)
        return await self._request("repl_run", t + _HOST_GRACE_S + 6, sid=sid, code=code, **fields)

    async def repl_close(self, sid: str) -> None:
        if self.alive:
            await self._request("repl_close", 10, sid=sid)

    async def reset(self) -> None:
        """Kill every process in the sandbox and empty its writable directories."""
        await self._request("reset", 30)

    def _check_path(self, path: str) -> str:
        if not isinstance(path, str) or not path or "\x00" in path:
            raise ValueError(f"invalid path {path!r}")
        return path

    async def write_file(self, path: str, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        reply = await self._chan_file("write", path=self._check_path(path), data=base64.b64encode(raw).decode())
        del reply

    async def read_file(self, path: str) -> bytes:
        reply = await self._chan_file("read", path=self._check_path(path))
        return base64.b64decode(reply["data"])

    async def _chan_file(self, op: str, **fields: Any) -> dict:
        if self._chan is None:
            await self.start()
        assert self._chan is not None
        reply = await self._chan.request(op, wait_s=60, **fields)
        if reply.get("ok"):
            return reply
        import errno as _errno

        code = reply.get("errno")
        msg = f"{fields['path']}: {reply.get('error')}"
        if code == _errno.ENOENT:
            raise FileNotFoundError(msg)
        if code in (_errno.EACCES, _errno.EPERM, _errno.EROFS):
            raise PermissionError(msg)
        if code == _errno.EISDIR:
            raise IsADirectoryError(msg)
        raise OSError(code or 0, msg)

    async def ping(self) -> bool:
        try:
            await self._request("ping", 10)
            return True
        except SandboxError:
            return False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._chan else "new")
        backend = self._isolation.backend if self._isolation else "?"
        return f"<LocalSandbox {backend} {state} id={id(self):x}>"


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]
