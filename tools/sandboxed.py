"""The episode's sandbox, shared by every tool of an episode that runs code.

The env's factory may return a sandbox or an awaitable of one (a lease from a warm pool).
Made on first use (episodes that never run code never pay for one), kept in the episode's
``ToolContext``, replaced when it crashes, and closed when the episode ends.
"""

from __future__ import annotations

import inspect

from sandboxes import Sandbox, SandboxError

_KEY = "_sandbox"


async def episode_sandbox(ctx) -> Sandbox:
    sb = ctx.state.get(_KEY)
    if sb is not None and not getattr(sb, "closed", False) and getattr(sb, "alive", True):
        return sb
    if sb is not None:
        await _close_quietly(sb)
    factory = getattr(ctx, "sandbox_factory", None)
    if factory is None:
        import sandboxes

        factory = sandboxes.create
    sb = factory()
    if inspect.isawaitable(sb):  # e.g. a lease from a pool of warm sandboxes
        sb = await sb
    ctx.state[_KEY] = sb
    await sb.start()
    return sb


async def release_episode_sandbox(ctx) -> None:
    sb = ctx.state.pop(_KEY, None)
    if sb is not None:
        await _close_quietly(sb)


async def _close_quietly(sb: Sandbox) -> None:
    try:
        await sb.close()
    except (SandboxError, OSError):
        pass  # already dead: there is nothing left to free


CRASH_NOTE = ("The sandbox crashed ({why}) and was restarted: variables and files from earlier "
              "calls are gone.")
