"""Framed JSON requests to the in-sandbox agent, many in flight at once."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
from typing import Any

from .base import SandboxError

_HDR = struct.Struct(">I")


class AgentChannel:
    """Sends requests over the agent's stdin and routes replies from its stdout by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self._closed_reason: str | None = None
        self._task = asyncio.create_task(self._read_loop())

    async def ready(self, timeout: float) -> dict:
        return await asyncio.wait_for(asyncio.shield(self._ready), timeout)

    async def _read_loop(self) -> None:
        reason = "the sandbox process exited"
        try:
            while True:
                hdr = await self._reader.readexactly(4)
                body = await self._reader.readexactly(_HDR.unpack(hdr)[0])
                msg = json.loads(body)
                if msg.get("id") == 0 and not self._ready.done():
                    self._ready.set_result(msg)
                    continue
                fut = self._pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as e:  # pragma: no cover - a protocol bug
            reason = f"protocol error: {type(e).__name__}: {e}"
        finally:
            self.fail(reason)

    def fail(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
        err = SandboxError(self._closed_reason)
        if not self._ready.done():
            self._ready.set_exception(err)
            self._ready.exception()  # mark retrieved: nobody may be waiting
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()

    @property
    def alive(self) -> bool:
        return self._closed_reason is None

    async def request(self, op: str, wait_s: float | None = None, **fields: Any) -> dict:
        if self._closed_reason is not None:
            raise SandboxError(self._closed_reason)
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        payload = json.dumps({"id": rid, "op": op, **fields}).encode()
        try:
            self._writer.write(_HDR.pack(len(payload)) + payload)
            await self._writer.drain()
            return await asyncio.wait_for(fut, wait_s)
        except (ConnectionError, BrokenPipeError) as e:
            self.fail(f"the sandbox process is gone ({e})")
            raise SandboxError(self._closed_reason) from e
        except asyncio.TimeoutError:
            raise SandboxError(f"the sandbox did not answer {op!r} within {wait_s:.1f}s") from None
        finally:
            self._pending.pop(rid, None)

    async def aclose(self) -> None:
        self.fail("the sandbox was closed")
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
