"""The Tool API: ``Tool``, ``ToolResult``, ``ToolContext``, and ``ToolSet`` which runs calls safely.

A tool is an object with ``name``, ``description``, ``parameters`` (a JSON Schema object) and
``async __call__(args, ctx) -> ToolResult``. Tools see only their arguments and a per-episode
``ToolContext``; they know nothing of envs, tokens or models.

``ToolSet`` is where robustness lives: whatever the agent sends and whatever a tool does (raise,
hang, print megabytes), ``ToolSet.call`` returns one ``ToolResult`` per call and never raises.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .parsers import ToolCall
from .schema import ArgumentError, describe_signature, to_openai_schema, validate_args

__all__ = ["Tool", "ToolContext", "ToolResult", "ToolSet", "cap_text"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolResult:
    """What a call returns to the agent. ``images`` hold whatever the env's message format
    takes (PIL images, bytes, paths); ``metrics`` are numbers for logging, not shown to it."""

    text: str
    images: tuple = ()
    error: bool = False
    metrics: dict = field(default_factory=dict)

    @classmethod
    def fail(cls, text: str, **metrics: Any) -> ToolResult:
        return cls(text, error=True, metrics=metrics)


@dataclass
class ToolContext:
    """Per-episode state shared by the tools of one episode.

    ``state`` holds per-episode objects a tool makes and must find again (a sandbox, a Python
    session, a browser page); keys starting with ``_`` are by convention private to a tool.
    ``sandbox_factory`` is a zero-argument callable the env provides to make its sandbox.
    """

    episode_id: str = ""
    task: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    sandbox_factory: Callable[[], Any] | None = None


class Tool(ABC):
    """Base class of all tools.

    Class attributes a subclass sets: ``name``, ``description``, ``parameters``. Optional:

    - ``terminal = True`` marks a finish action (the env ends the episode when it succeeds).
    - ``concurrent = False`` makes ``ToolSet`` run this tool's calls of one turn one after
      another in the order given (for tools whose calls share state, like a REPL).
    """

    name: str = ""
    description: str = ""
    parameters: dict = {"type": "object", "properties": {}, "additionalProperties": False}
    terminal: bool = False
    concurrent: bool = True

    @abstractmethod
    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run with validated ``args``."""

    async def setup(self, ctx: ToolContext) -> None:
        """Called once when an episode starts (default: nothing)."""

    async def teardown(self, ctx: ToolContext) -> None:
        """Called once when an episode ends, even after errors (default: nothing)."""

    def validate(self, args: Any) -> dict[str, Any]:
        """Checked and coerced arguments; raises ``ArgumentError``."""
        return validate_args(args, self.parameters)

    def signature(self) -> str:
        return describe_signature(self.name, self.parameters)

    def openai_schema(self) -> dict[str, Any]:
        return to_openai_schema(self)[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.signature()}>"


def cap_text(text: str, limit: int) -> tuple[str, int]:
    """Keep the head and tail of ``text`` within ``limit`` characters; return (text, chars cut).

    Both ends matter: the head has the first output, the tail the error or final value.
    """
    if limit <= 0 or len(text) <= limit:
        return text, 0
    marker_room = 80
    keep = max(limit - marker_room, 0)
    head = keep * 2 // 3
    tail = keep - head
    cut = len(text) - head - tail
    marker = f"\n[... {cut} characters cut from the middle of this output ...]\n"
    return text[:head] + marker + (text[-tail:] if tail else ""), cut


class ToolSet(Mapping[str, Tool]):
    """A name -> Tool mapping that runs calls concurrently and turns every failure into a result.

    Args:
        tools: the tools, as an iterable or a name->tool mapping. Names must be unique.
        timeout_s: wall-clock limit per call; a slower call returns an error result. A timed-out
            coroutine is cancelled, but a sync function running in a worker thread can't be
            killed: tools that block must enforce their own limits (as ``sql`` does).
        max_output_chars: longer outputs keep their head and tail with a note of what was cut.
    """

    def __init__(self, tools: Iterable[Tool] | Mapping[str, Tool] = (), *, timeout_s: float | None = 60.0,
                 max_output_chars: int = 16384) -> None:
        self.tools: dict[str, Tool] = {}
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        for t in (tools.values() if isinstance(tools, Mapping) else tools):
            self.add(t)

    def add(self, tool: Tool) -> None:
        if not isinstance(getattr(tool, "name", None), str) or not tool.name:
            raise ValueError(f"ToolSet: {tool!r} has no name")
        if not callable(tool):
            raise TypeError(f"ToolSet: tool {tool.name!r} is not callable")
        if tool.name in self.tools:
            raise ValueError(f"ToolSet: two tools are named {tool.name!r}")
        self.tools[tool.name] = tool

    # Mapping protocol
    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tools)

    def __len__(self) -> int:
        return len(self.tools)

    def __repr__(self) -> str:
        return f"ToolSet({', '.join(self.tools)})"

    def openai_schema(self) -> list[dict[str, Any]]:
        return to_openai_schema(list(self.tools.values()))

    async def setup(self, ctx: ToolContext) -> None:
        """Set every tool up for an episode; a failure tears down those already set up, then raises."""
        done: list[Tool] = []
        for t in self.tools.values():
            try:
                await t.setup(ctx)
            except Exception:
                await self._teardown(done, ctx)
                raise
            done.append(t)

    async def teardown(self, ctx: ToolContext) -> None:
        """Tear every tool down; failures are logged, never raised, so each tool gets its turn."""
        await self._teardown(list(self.tools.values()), ctx)

    async def _teardown(self, tools: Sequence[Tool], ctx: ToolContext) -> None:
        for t in reversed(tools):
            try:
                await t.teardown(ctx)
            except Exception:
                log.exception("teardown of tool %r failed", t.name)

    async def call(self, calls: Sequence[ToolCall | Mapping[str, Any]], ctx: ToolContext) -> list[ToolResult]:
        """Run ``calls`` and return their results in the same order; never raises.

        Calls run concurrently, except that calls to a ``concurrent = False`` tool run one after
        another in the order given.
        """
        calls = list(calls)
        results: list[ToolResult | None] = [None] * len(calls)
        serial: dict[str, list[int]] = {}
        jobs = []
        for i, c in enumerate(calls):
            name = _call_name(c)
            tool = self.tools.get(name) if isinstance(name, str) else None
            if tool is not None and not getattr(tool, "concurrent", True):
                serial.setdefault(name, []).append(i)
            else:
                jobs.append(self._run_into(results, i, c, ctx))
        for idxs in serial.values():
            jobs.append(self._run_chain(results, idxs, calls, ctx))
        await asyncio.gather(*jobs)
        return [r if r is not None else ToolResult.fail("internal error: no result") for r in results]

    async def _run_into(self, results: list, i: int, c: Any, ctx: ToolContext) -> None:
        results[i] = await self.call_one(c, ctx)

    async def _run_chain(self, results: list, idxs: list[int], calls: list, ctx: ToolContext) -> None:
        for i in idxs:
            results[i] = await self.call_one(calls[i], ctx)

    async def call_one(self, call: ToolCall | Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Run one call with every guard; never raises (except on cancellation)."""
        t0 = time.perf_counter()
        name = _call_name(call)
        args = call.get("arguments", {}) if isinstance(call, Mapping) else getattr(call, "arguments", None)
        res = await self._guarded(name, args, ctx)
        text, cut = cap_text(res.text if isinstance(res.text, str) else str(res.text), self.max_output_chars)
        metrics = dict(res.metrics)
        metrics.setdefault("latency_s", time.perf_counter() - t0)
        if cut:
            metrics["chars_cut"] = cut
        return dataclasses.replace(res, text=text, metrics=metrics)

    async def _guarded(self, name: Any, args: Any, ctx: ToolContext) -> ToolResult:
        if not isinstance(name, str) or name not in self.tools:
            return ToolResult.fail(self._unknown(name), unknown_tool=1)
        tool = self.tools[name]
        try:
            clean = tool.validate(args)
        except ArgumentError as e:
            return ToolResult.fail(_argument_message(tool, e), invalid_args=1)
        except Exception as e:  # a broken schema is reported like any tool failure
            return ToolResult.fail(f"Tool '{name}' could not check its arguments: {type(e).__name__}: {e}")
        try:
            if self.timeout_s is None:
                out = await tool(clean, ctx)
            else:
                out = await asyncio.wait_for(tool(clean, ctx), self.timeout_s)
        except asyncio.TimeoutError:
            return ToolResult.fail(f"Tool '{name}' timed out after {self.timeout_s:g} s and was stopped.",
                                   timed_out=1)
        except Exception as e:
            log.debug("tool %r raised", name, exc_info=True)
            return ToolResult.fail(f"Tool '{name}' failed: {type(e).__name__}: {e}", tool_exception=1)
        if isinstance(out, ToolResult):
            return out
        if isinstance(out, str):
            return ToolResult(out)
        return ToolResult.fail(f"Tool '{name}' returned {type(out).__name__} instead of a ToolResult "
                               "(a bug in the tool).")

    def _unknown(self, name: Any) -> str:
        available = ", ".join(self.tools) or "(none)"
        if not isinstance(name, str) or not name:
            return f"The tool call has no valid tool name. Available tools: {available}."
        hint = difflib.get_close_matches(name, list(self.tools), n=1, cutoff=0.6)
        did = f" Did you mean '{hint[0]}'?" if hint else ""
        return f"Unknown tool '{name}'.{did} Available tools: {available}."


def _call_name(c: Any) -> Any:
    return c.get("name") if isinstance(c, Mapping) else getattr(c, "name", None)


def _argument_message(tool: Tool, e: ArgumentError) -> str:
    lines = [f"Invalid arguments for tool '{tool.name}':"]
    lines += [f"- {p}" for p in e.problems]
    lines.append(f"Expected: {tool.signature()}")
    lines.append("Arguments schema: " + json.dumps(tool.parameters, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines)
