"""Warm sandboxes handed out under concurrency.

Starting a sandbox costs tens of milliseconds; a pool keeps ``size`` of them running idle and
gives each user a clean one, starting more when all are busy (up to ``max_size``). Returned
sandboxes are reset (processes killed, files wiped) before anyone else gets them, so no state
crosses from one user to the next. A sandbox that died is replaced rather than handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from .base import Command, ExecResult, Isolation, Limits, Sandbox, SandboxError
from .local import LocalSandbox


class SandboxPool:
    """``size`` warm sandboxes; at most ``max_size`` in use at once (None: no cap)."""

    def __init__(self, size: int = 4, limits: Limits | None = None, *,
                 factory: Callable[[], Sandbox] | None = None, max_size: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        if max_size is not None and max_size < size:
            raise ValueError(f"max_size ({max_size}) must be at least size ({size})")
        self.size = size
        self.max_size = max_size
        self.limits = limits or Limits()
        self._factory = factory or (lambda: LocalSandbox(self.limits))
        self._idle: list[Sandbox] = []
        self._all: set[Sandbox] = set()
        self._slots = asyncio.Semaphore(max_size) if max_size else None
        self._started = False
        self._closed = False
        self._lock = asyncio.Lock()

    @property
    def in_use(self) -> int:
        return len(self._all) - len(self._idle)

    async def start(self) -> "SandboxPool":
        async with self._lock:
            if not self._started:
                self._idle.extend(await asyncio.gather(*(self._new() for _ in range(self.size))))
                self._started = True
        return self

    async def _new(self) -> Sandbox:
        sb = self._factory()
        await sb.start()
        self._all.add(sb)
        return sb

    async def _checkout(self) -> Sandbox:
        if not self._started:
            await self.start()
        if self._closed:
            raise SandboxError("the pool is closed")
        if self._slots is not None:
            await self._slots.acquire()
        try:
            while self._idle:
                sb = self._idle.pop()
                if sb.alive:
                    return sb
                self._all.discard(sb)
                await sb.close()
            return await self._new()
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise

    async def _recycle(self, sb: Sandbox, *, already_clean: bool = False) -> None:
        """Put ``sb`` back clean, or close it if it is broken or the pool has enough idle."""
        try:
            if not self._closed and sb.alive and len(self._idle) < self.size:
                try:
                    if not already_clean:
                        await sb.reset()
                    self._idle.append(sb)
                    return
                except SandboxError:
                    pass  # could not be cleaned: it is closed below, never handed out dirty
            self._all.discard(sb)
            await sb.close()
        finally:
            if self._slots is not None:
                self._slots.release()

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Sandbox]:
        """A clean sandbox for the duration of the block."""
        sb = await self._checkout()
        try:
            yield sb
        finally:
            await asyncio.shield(self._recycle(sb))

    async def lease(self) -> "LeasedSandbox":
        """A clean sandbox that goes back to the pool when closed (for code that owns a
        sandbox's lifetime, like an env episode)."""
        return LeasedSandbox(self, await self._checkout())

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

    async def exec(self, cmd: Command, *, timeout: float | None = None, stdin: str | bytes | None = None,
                   env: Mapping[str, str] | None = None) -> ExecResult:
        async with self.acquire() as sb:
            return await sb.exec(cmd, timeout=timeout, stdin=stdin, env=env)

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(sb.close() for sb in list(self._all)), return_exceptions=True)
        self._all.clear()
        self._idle.clear()

    async def __aenter__(self) -> "SandboxPool":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class LeasedSandbox(Sandbox):
    """A pooled sandbox on loan: everything goes to the real one; ``close`` returns it."""

    def __init__(self, pool: SandboxPool, inner: Sandbox) -> None:
        self._pool = pool
        self._inner = inner
        self._returned = False
        self.limits = inner.limits
        self.workdir = inner.workdir

    @property
    def isolation(self) -> Isolation:
        return self._inner.isolation

    @property
    def closed(self) -> bool:
        return self._returned

    @property
    def alive(self) -> bool:
        return not self._returned and self._inner.alive

    async def start(self) -> "LeasedSandbox":
        if self._returned:
            raise SandboxError("this leased sandbox was returned to its pool")
        return self

    async def exec(self, cmd: Command, *, timeout: float | None = None, stdin: str | bytes | None = None,
                   env: Mapping[str, str] | None = None) -> ExecResult:
        return await self._live().exec(cmd, timeout=timeout, stdin=stdin, env=env)

    async def write_file(self, path: str, data: str | bytes) -> None:
        await self._live().write_file(path, data)

    async def read_file(self, path: str) -> bytes:
        return await self._live().read_file(path)

    async def reset(self) -> None:
        await self._live().reset()

    def __getattr__(self, name: str) -> Any:
        # Backend extras (run_python, repl_run, ...) pass straight through.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._live(), name)

    def _live(self) -> Sandbox:
        if self._returned:
            raise SandboxError("this leased sandbox was returned to its pool")
        return self._inner

    async def close(self) -> None:
        if not self._returned:
            self._returned = True
            await asyncio.shield(self._pool._recycle(self._inner))


_shared: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def shared_pool(limits: Limits, size: int = 4) -> SandboxPool:
    """One pool per event loop and limits, shared by every env of that loop.

    Sandboxes hold subprocess transports bound to a loop, so pools cannot cross loops.
    """
    loop = asyncio.get_running_loop()
    pools = _shared.setdefault(loop, {})
    pool = pools.get(limits)
    if pool is None or pool._closed:
        pool = pools[limits] = SandboxPool(size=size, limits=limits)
    return pool


async def close_shared_pools() -> None:
    """Close the shared pools of the running loop (an env that owns its loop calls this)."""
    pools = _shared.pop(asyncio.get_running_loop(), {})
    await asyncio.gather(*(p.close() for p in pools.values()), return_exceptions=True)
