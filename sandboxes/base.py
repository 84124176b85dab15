"""The sandbox contract every backend honours.

A sandbox is one isolated place where untrusted code runs. It has a private writable
workdir that persists across calls until ``close()``; nothing else of the host is writable,
and nothing outside is reachable. Backends differ only in *how* they hold the code, which
``Sandbox.isolation`` reports honestly.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any


class SandboxError(RuntimeError):
    """The sandbox itself failed (could not start, died, was closed), not the code in it."""


class SandboxUnavailable(SandboxError):
    """A requested backend cannot run on this machine; the message says what to install."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits applied to every command run in a sandbox.

    ``wall_s`` is the default per-call timeout; ``cpu_s`` and ``memory_mb`` bound each call's
    processes; ``max_procs`` bounds the processes alive in the sandbox at once;
    ``max_output_bytes`` caps what is returned of stdout and of stderr (each).
    """

    wall_s: float = 30.0
    cpu_s: float = 30.0
    memory_mb: int = 1024
    max_output_bytes: int = 64 * 1024
    max_procs: int = 64
    max_file_mb: int = 256
    network: bool = False

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_mb", "max_output_bytes", "max_procs", "max_file_mb"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")

    def replace(self, **changes: Any) -> "Limits":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """What one command produced. ``exit_code`` is negative for death by signal."""

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False
    duration_s: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclasses.dataclass(frozen=True)
class Isolation:
    """What actually holds the code, in words a user can check."""

    backend: str  # "bwrap", "rlimits", "docker"
    namespaces: tuple[str, ...] = ()
    network_isolated: bool = False
    filesystem_isolated: bool = False
    process_limit: str = "none"  # "cgroup", "rlimit", "none"
    notes: str = ""

    @property
    def strong(self) -> bool:
        return self.network_isolated and self.filesystem_isolated

    def __str__(self) -> str:
        ns = ",".join(self.namespaces) or "none"
        text = (
            f"{self.backend} (namespaces: {ns}; network isolated: {self.network_isolated}; "
            f"filesystem isolated: {self.filesystem_isolated}; process limit: {self.process_limit})"
        )
        return f"{text} - {self.notes}" if self.notes else text


Command = str | Sequence[str]

# Environment every backend gives sandboxed code (each adds PATH, HOME and TMPDIR of its own).
SANDBOX_ENV: dict[str, str] = {
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    # One BLAS thread: a sandbox must not grab every core, and each thread reserves address
    # space that counts against the memory limit.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class Sandbox(abc.ABC):
    """Async interface to one sandbox. Use as ``async with sandboxes.create() as sb:``."""

    limits: Limits
    workdir: str  # path of the writable workdir as seen by code inside the sandbox

    @property
    @abc.abstractmethod
    def isolation(self) -> Isolation: ...

    @abc.abstractmethod
    async def start(self) -> "Sandbox":
        """Bring the sandbox up; idempotent."""

    @abc.abstractmethod
    async def exec(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run ``cmd`` (a shell string, or an argv list) in the workdir.

        Never raises for what the command does (crash, timeout, huge output): that is in the
        result. Raises :class:`SandboxError` only when the sandbox itself is gone.
        """

    @abc.abstractmethod
    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write ``data`` to ``path`` (relative paths are under the workdir)."""

    @abc.abstractmethod
    async def read_file(self, path: str) -> bytes:
        """Read ``path`` (relative paths are under the workdir); FileNotFoundError if absent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Kill everything inside and free the sandbox's resources; idempotent."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool: ...

    @property
    def alive(self) -> bool:
        """Started, not closed, and still answering as far as the backend knows."""
        return not self.closed

    async def reset(self) -> None:
        """Kill every process inside and empty the workdir, leaving the sandbox as new.

        Pools call this between users; a backend that cannot reset raises SandboxError and
        the pool replaces the sandbox instead.
        """
        raise SandboxError(f"{type(self).__name__} cannot be reset; close it and make another")

    async def __aenter__(self) -> "Sandbox":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
