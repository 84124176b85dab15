"""Warm sandboxes handed out under concurrency.

Starting a sandbox costs tens of milliseconds; a pool keeps ``size`` of them running and
gives each user a clean one. Returned sandboxes are reset (processes killed, files wiped)
before anyone else gets them, so no state crosses from one user to the next. A sandbox that
died is replaced rather than handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

from .base import ExecResult, Limits, Sandbox, SandboxError
from .local import LocalSandbox


class SandboxPool:
    def __init__(self, size: int = 4, limits: Limits | None = None, *,
                 factory: Callable[[], Sandbox] | None = None) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        self.size = size
        self.limits = limits or Limits()
        self._factory = factory or (lambda: LocalSandbox(self.limits))
        self._idle: asyncio.Queue[Sandbox] = asyncio.Queue()
        self._all: set[Sandbox] = set()
        self._started = False
        self._closed = False
        self._lock = asyncio.Lock()

    async def start(self) -> "SandboxPool":
        async with self._lock:
            if not self._started:
                sbs = await asyncio.gather(*(self._new() for _ in range(self.size)))
                for sb in sbs:
                    self._idle.put_nowait(sb)
                self._started = True
        return self

    async def _new(self) -> Sandbox:
        sb = self._factory()
        await sb.start()
        self._all.add(sb)
        return sb

    async def _recycle(self, sb: Sandbox, *, already_clean: bool = False) -> None:
        """Put ``sb`` back clean, or a fresh one in its place."""
        if self._closed:
            await sb.close()
            return
        try:
            if sb.alive:
                if not already_clean:
                    await sb.reset()
                self._idle.put_nowait(sb)
                return
        except SandboxError:
            pass
        self._all.discard(sb)
        await sb.close()
        try:
            self._idle.put_nowait(await self._new())
        except SandboxError:
            # Keep the pool's size honest: a later acquire retries the start.
            self._idle.put_nowait(self._factory())

    async def _checkout(self) -> Sandbox:
        if not self._started:
            await self.start()
        if self._closed:
            raise SandboxError("the pool is closed")
        sb = await self._idle.get()
        if not sb.alive:
            self._all.discard(sb)
            await sb.close()
            sb = await self._new()
        return sb

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Sandbox]:
        """A clean sandbox for the duration of the block."""
        sb = await self._checkout()
        try:
            yield sb
        finally:
            await asyncio.shield(self._recycle(sb))

    async def run_python(self, code: str, *, timeout: float | None = None,
                         stdin: str | bytes | None = None, env: Mapping[str, str] | None = None) -> ExecResult:
        """One-shot Python in a warm isolated sandbox; nothing of it survives the call."""
        sb = await self._checkout()
        clean = False
        try:
            if isinstance(sb, LocalSandbox):
                # reset_after wipes inside the same round trip: no second call to recycle.
                res = await sb.run_python(code, timeout=timeout, stdin=stdin, env=env, reset_after=True)
                clean = True
                return res
            return await sb.exec(["python3", "-c", code], timeout=timeout, stdin=stdin, env=env)
        finally:
            await asyncio.shield(self._recycle(sb, already_clean=clean))

    async def exec(self, cmd, *, timeout: float | None = None, stdin: str | bytes | None = None,
                   env: Mapping[str, str] | None = None) -> ExecResult:
        async with self.acquire() as sb:
            return await sb.exec(cmd, timeout=timeout, stdin=stdin, env=env)

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(sb.close() for sb in list(self._all)), return_exceptions=True)
        self._all.clear()

    async def __aenter__(self) -> "SandboxPool":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
