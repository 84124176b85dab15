"""``python``: run code in the episode's persistent interpreter (a code-interpreter tool)."""

from __future__ import annotations

from typing import Any

from sandboxes import PythonSession, SandboxError

from .base import Tool, ToolContext, ToolResult
from .sandboxed import CRASH_NOTE, episode_sandbox

_SESSION = "_python_session"


class PythonTool(Tool):
    """Variables, imports and files persist across calls within an episode. Output is what the
    code prints plus the value of a trailing bare expression, like a notebook cell."""

    name = "python"
    concurrent = False  # one interpreter: calls of a turn run in the order written
    description = ("Run Python 3 code in a persistent interpreter: variables and imports persist "
                   "between calls. Returns what the code prints, and the value of the last line if "
                   "it is an expression. Use print() to see results.")
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python source to run"}},
        "required": ["code"],
        "additionalProperties": False,
    }

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s

    async def _session(self, ctx: ToolContext) -> PythonSession:
        sb = await episode_sandbox(ctx)
        sess = ctx.state.get(_SESSION)
        if sess is None or sess.sandbox is not sb:
            sess = PythonSession(sb)
            ctx.state[_SESSION] = sess
        return sess

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        code = args["code"]
        try:
            sess = await self._session(ctx)
            res = await sess.run(code, timeout=self.timeout_s)
        except SandboxError as e:
            ctx.state.pop(_SESSION, None)
            return ToolResult(CRASH_NOTE.format(why=e), error=True, metrics={"sandbox_crash": 1})
        text = res.render()
        if res.timed_out:
            text += f"\n[timed out after {self.timeout_s:g}s]"
        return ToolResult(text, error=res.error is not None or res.timed_out,
                          metrics={"duration_s": res.duration_s, "timed_out": int(res.timed_out),
                                   "restarted": int(res.restarted), "truncated": int(res.truncated)})

    async def teardown(self, ctx: ToolContext) -> None:
        ctx.state.pop(_SESSION, None)  # the episode's sandbox, closed by the env, holds it
