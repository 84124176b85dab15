"""A persistent Python interpreter inside a sandbox, as a code-interpreter tool needs."""

from __future__ import annotations

import dataclasses

from .base import Limits, Sandbox, SandboxError
from .local import LocalSandbox, new_session_id


@dataclasses.dataclass(frozen=True)
class PyResult:
    """One cell's outcome. ``value`` is the repr of a trailing bare expression, if any;
    ``error`` the traceback; ``restarted`` means the interpreter died and state was lost."""

    stdout: str
    stderr: str
    value: str | None = None
    error: str | None = None
    timed_out: bool = False
    restarted: bool = False
    truncated: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    def render(self) -> str:
        """The text an agent sees: output, then the value or the error."""
        parts = [p for p in (self.stdout, self.stderr) if p]
        if self.value is not None:
            parts.append(self.value)
        if self.error:
            parts.append(self.error)
        text = "\n".join(p.rstrip("\n") for p in parts)
        return text if text else "(no output)"


class PythonSession:
    """Variables survive between ``run`` calls; a run past its timeout is interrupted
    (KeyboardInterrupt), and one that ignores the interrupt is killed and the session
    restarted, which the result says. Memory is bounded by the sandbox's ``memory_mb``.

    Without a ``sandbox``, the session owns a fresh :class:`LocalSandbox`.
    """

    def __init__(self, sandbox: Sandbox | None = None, *, limits: Limits | None = None) -> None:
        if sandbox is not None and not hasattr(sandbox, "repl_run"):
            raise SandboxError(
                f"{type(sandbox).__name__} does not host persistent Python sessions; "
                "use a LocalSandbox (sandboxes.create('local'))")
        self._owns = sandbox is None
        self.sandbox = sandbox if sandbox is not None else LocalSandbox(limits)
        self.sid = new_session_id()
        self._closed = False

    async def start(self) -> "PythonSession":
        await self.sandbox.start()
        return self

    async def run(self, code: str, *, timeout: float | None = None) -> PyResult:
        if self._closed:
            raise SandboxError("the Python session is closed")
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        reply = await self.sandbox.repl_run(self.sid, code, timeout=timeout)  # type: ignore[attr-defined]
        return PyResult(stdout=reply["stdout"], stderr=reply["stderr"], value=reply.get("value"),
                        error=reply.get("error"), timed_out=reply["timed_out"], restarted=reply["restarted"],
                        truncated=reply["truncated"], duration_s=reply["duration_s"])

    async def restart(self) -> None:
        """Drop all state: the next run starts in a fresh interpreter."""
        await self.sandbox.repl_close(self.sid)  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._owns:
                await self.sandbox.close()
            else:
                await self.sandbox.repl_close(self.sid)  # type: ignore[attr-defined]
        except SandboxError:
            pass  # the sandbox is already gone: nothing left to free

    async def __aenter__(self) -> "PythonSession":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
