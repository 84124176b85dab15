"""``shell``: run a command with /bin/sh in the episode's sandbox (files persist in it)."""

from __future__ import annotations

from typing import Any

from sandboxes import SandboxError

from .base import Tool, ToolContext, ToolResult
from .sandboxed import CRASH_NOTE, episode_sandbox


class ShellTool(Tool):
    name = "shell"
    description = ("Run a shell command (/bin/sh) in the task's sandbox. The working directory and "
                   "its files persist between calls; there is no network. Returns stdout, stderr "
                   "and the exit code.")
    parameters = {
        "type": "object",
        "properties": {"command": {"type": "string", "description": "the command line to run"}},
        "required": ["command"],
        "additionalProperties": False,
    }

    def __init__(self, timeout_s: float = 20.0) -> None:
        self.timeout_s = timeout_s

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            sb = await episode_sandbox(ctx)
            r = await sb.exec(args["command"], timeout=self.timeout_s)
        except SandboxError as e:
            return ToolResult(CRASH_NOTE.format(why=e), error=True, metrics={"sandbox_crash": 1})
        parts = [r.stdout.rstrip("\n")] if r.stdout else []
        if r.stderr:
            parts.append("[stderr]\n" + r.stderr.rstrip("\n"))
        if r.timed_out:
            parts.append(f"[timed out after {self.timeout_s:g}s]")
        parts.append(f"[exit code {r.exit_code}]")
        return ToolResult("\n".join(parts), error=r.exit_code != 0 or r.timed_out,
                          metrics={"duration_s": r.duration_s, "timed_out": int(r.timed_out)})
