"""``ToolEnv``: any tool set + a task source + a reward -> a multi-turn Gymnasium episode.

An episode: ``reset`` picks a task and returns the opening messages (system prompt with the
tools' descriptions, then the task's question). Each ``step(text)`` takes one assistant turn,
runs the tool calls it holds concurrently in the episode's sandbox, and returns their outputs
as ``tool`` messages. It ends when the agent answers (the ``answer`` tool, or a turn with no
tool call when ``answer_without_tool`` is set), after ``max_turns``, or past a budget.

Nothing the agent writes can raise out of ``step``: a malformed turn becomes an error message
to the agent and a count in ``info``. The env knows nothing of tokens; a learner that wants a
token budget passes ``token_counter``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym

from sandboxes import Limits, Sandbox
from tools import Tool, ToolContext, ToolResult, ToolSet
from tools.parsers import ParseResult, get_parser
from tools.sandboxed import release_episode_sandbox

from .spaces import Messages, TurnText

log = logging.getLogger(__name__)

RewardFn = Callable[[Mapping[str, Any], "Episode"], "float | Mapping[str, float] | Awaitable[Any]"]
TaskSource = Sequence[Mapping[str, Any]] | Callable[[str], Sequence[Mapping[str, Any]]]

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful assistant that solves tasks by calling tools. To call a tool, write\n"
    "<tool_call>\n{{\"name\": <tool name>, \"arguments\": <JSON object>}}\n</tool_call>\n"
    "You may call several tools in one turn. Tool results come back in the next message.\n"
    "When you know the final answer, call the `answer` tool with it.\n\n"
    "Tools:\n{tool_list}"
)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")


@dataclasses.dataclass
class Episode:
    """What happened so far in one episode; the reward function reads it."""

    episode_id: str
    task: Mapping[str, Any]
    messages: list[dict] = dataclasses.field(default_factory=list)
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    parse_errors: int = 0
    calls_by_tool: dict[str, int] = dataclasses.field(default_factory=dict)
    answer: str | None = None
    done: bool = False
    end_reason: str | None = None
    tokens: int = 0
    chars: int = 0


def extract_answer(text: str) -> str:
    """A final answer from free text: ``<answer>..</answer>``, else the last ``\\boxed{}``,
    else the text itself."""
    m = _ANSWER_TAG.findall(text)
    if m:
        return m[-1].strip()
    b = _BOXED.findall(text)
    if b:
        return b[-1].strip()
    return text.strip()


class ToolEnv(gym.Env):
    """A Gymnasium env over tools. See the module docstring for the episode's shape.

    Args:
        tools: the tools the agent may call (an ``answer`` tool is added if missing).
        tasks: a list of task dicts, or a callable ``split -> list`` (e.g. ``tasks.load``).
        reward_fn: ``(task, episode) -> float`` or a dict of named terms whose ``"total"``
            (or sum) is the reward; may be async. Called once, when the episode ends.
        split: which split the callable task source is asked for.
        parser: tool-call format of the agent's turns (``hermes``, ``code``, ``openai``).
        max_turns: assistant turns before the episode is truncated.
        answer_without_tool: a turn with no tool call ends the episode, its text the answer.
        prompt_fn: ``task -> str``, the user message (default: the task's ``question``).
        sandbox_limits: limits of the episode's sandbox (made lazily, on first use).
        sandbox_pool_size: warm sandboxes kept per event loop and shared by envs; an episode
            leases one, and it is wiped before the next episode gets it. 0: a fresh sandbox
            per episode. ``sandbox_factory`` overrides both.
        token_counter: counts tokens of a turn, for ``max_episode_tokens``.
        tool_server: URL of an ``agent-rl serve-tools`` server: the tools run there instead.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        tools: Sequence[Tool],
        tasks: TaskSource,
        reward_fn: RewardFn,
        *,
        split: str = "train",
        parser: str = "hermes",
        system_prompt: str | None = None,
        prompt_fn: Callable[[Mapping[str, Any]], str] | None = None,
        max_turns: int = 8,
        max_calls_per_turn: int = 8,
        answer_without_tool: bool = True,
        sandbox_limits: Limits | None = None,
        sandbox_factory: Callable[[], Sandbox | Awaitable[Sandbox]] | None = None,
        sandbox_pool_size: int = 4,
        tool_timeout_s: float = 60.0,
        max_tool_output_chars: int = 8192,
        max_action_chars: int = 65536,
        token_counter: Callable[[str], int] | None = None,
        max_episode_tokens: int | None = None,
        tool_server: str | None = None,
        render_mode: str | None = None,
        name: str = "ToolEnv",
    ) -> None:
        from tools.answer import AnswerTool

        if tool_server is not None:
            # The tools (and their sandboxes) run on the server; only their names and schemas are here.
            from tools.server import RemoteToolSet

            self.tools: ToolSet = RemoteToolSet(tool_server, timeout_s=tool_timeout_s + 30)
        else:
            tool_list = list(tools)
            if not any(getattr(t, "terminal", False) for t in tool_list):
                tool_list.append(AnswerTool())
            self.tools = ToolSet(tool_list, timeout_s=tool_timeout_s, max_output_chars=max_tool_output_chars)
        self._task_source = tasks
        self.split = split
        self.reward_fn = reward_fn
        self.parser = get_parser(parser)
        self.system_prompt = system_prompt
        self.prompt_fn = prompt_fn
        self.max_turns = max_turns
        self.max_calls_per_turn = max_calls_per_turn
        self.answer_without_tool = answer_without_tool
        self.sandbox_limits = sandbox_limits or Limits(wall_s=20, cpu_s=20, memory_mb=1024)
        self._sandbox_factory = sandbox_factory
        self.sandbox_pool_size = sandbox_pool_size
        self.token_counter = token_counter
        self.max_episode_tokens = max_episode_tokens
        self.render_mode = render_mode
        self.name = name
        self.action_space = TurnText(max_action_chars)
        self.observation_space = Messages(max_messages=max_calls_per_turn + 4)
        self._tasks_cache: list[Mapping[str, Any]] | None = None
        self.episode: Episode | None = None
        self._ctx: ToolContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- tasks and prompts ------------------------------------------------------------

    @property
    def task_list(self) -> list[Mapping[str, Any]]:
        if self._tasks_cache is None:
            src = self._task_source
            self._tasks_cache = list(src(self.split) if callable(src) else src)
            if not self._tasks_cache:
                raise ValueError(f"{self.name}: the task source gave no tasks for split {self.split!r}")
        return self._tasks_cache

    def tool_schemas(self) -> list[dict]:
        """The tools in OpenAI function format, for a chat template's ``tools=``."""
        return self.tools.openai_schema()

    def build_system_prompt(self, task: Mapping[str, Any]) -> str:
        lines = [f"- {t.name}: {t.description.strip().splitlines()[0] if t.description else ''} "
                 f"Arguments (JSON Schema): {json.dumps(t.parameters, separators=(',', ':'))}"
                 for t in self.tools.values()]
        template = self.system_prompt if self.system_prompt is not None else DEFAULT_SYSTEM_PROMPT
        return template.format(tool_list="\n".join(lines), **{k: v for k, v in task.items() if isinstance(v, str)
                                                               and k not in ("tool_list",)})

    def task_prompt(self, task: Mapping[str, Any]) -> str:
        if self.prompt_fn is not None:
            return self.prompt_fn(task)
        return str(task.get("question") or task.get("prompt") or "")

    # ---- async API --------------------------------------------------------------------

    async def areset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[list[dict], dict]:
        if seed is not None:
            super().reset(seed=seed)
        await self._end_episode()
        options = dict(options or {})
        if "task" in options:
            task = options["task"]
        elif "index" in options:
            task = self.task_list[int(options["index"]) % len(self.task_list)]
        else:
            task = self.task_list[int(self.np_random.integers(len(self.task_list)))]
        # From the seeded generator, so the same seed replays the same episode, ids included.
        ep_id = options.get("episode_id") or f"{int(self.np_random.integers(1 << 48)):012x}"
        self.episode = Episode(episode_id=ep_id, task=task)
        self._ctx = ToolContext(episode_id=ep_id, task=dict(task), sandbox_factory=self._make_sandbox)
        opening = [{"role": "system", "content": self.build_system_prompt(task)},
                   {"role": "user", "content": self.task_prompt(task)}]
        self.episode.messages.extend(opening)
        await self.tools.setup(self._ctx)
        return opening, {"task_id": task.get("id"), "episode_id": ep_id, "tools": list(self.tools)}

    def _make_sandbox(self) -> Sandbox | Awaitable[Sandbox]:
        if self._sandbox_factory is not None:
            return self._sandbox_factory()
        if self.sandbox_pool_size > 0:
            from sandboxes.pool import shared_pool

            return shared_pool(self.sandbox_limits, self.sandbox_pool_size).lease()
        import sandboxes

        return sandboxes.create("auto", limits=self.sandbox_limits)

    async def astep(self, action: Any) -> tuple[list[dict], float, bool, bool, dict]:
        ep = self.episode
        if ep is None:
            raise RuntimeError(f"{self.name}: call reset() before step()")
        if ep.done:
            raise RuntimeError(f"{self.name}: the episode has ended; call reset() to start another")
        try:
            return await self._step(ep, action)
        except Exception as e:  # the last line of defence: an env bug must not end training
            log.exception("%s: internal error in step", self.name)
            ep.done, ep.end_reason = True, "env_error"
            await self._end_episode()
            msg = {"role": "user", "content": f"[environment error: {type(e).__name__}: {e}]"}
            return [msg], 0.0, False, True, self._info(ep, error=f"{type(e).__name__}: {e}")

    async def _step(self, ep: Episode, action: Any) -> tuple[list[dict], float, bool, bool, dict]:
        text, problem = self._coerce_action(action)
        ep.turns += 1
        ep.chars += len(text)
        if self.token_counter is not None:
            ep.tokens += int(self.token_counter(text))
        ep.messages.append({"role": "assistant", "content": text})

        parsed: ParseResult = self.parser.parse(text) if problem is None else ParseResult([], [problem], text)
        calls = list(parsed.calls)
        errors = list(parsed.errors)
        if len(calls) > self.max_calls_per_turn:
            errors.append(f"Too many tool calls in one turn ({len(calls)}); only the first "
                          f"{self.max_calls_per_turn} were run.")
            calls = calls[: self.max_calls_per_turn]
        ep.parse_errors += len(errors)

        terminal_call = next((c for c in calls if getattr(self.tools.get(c.name), "terminal", False)), None)
        obs: list[dict] = []
        if terminal_call is not None:
            # An answer ends the episode; other calls in the same turn are moot.
            results = await self.tools.call([terminal_call], self._ctx)
            res = results[0]
            if not res.error:
                ep.answer = res.text  # the answer tool has validated and stripped it
                return await self._finish(ep, "answer", obs)
            ep.tool_errors += 1
            obs.append(self._tool_message(terminal_call.name, res))
        elif calls:
            results = await self.tools.call(calls, self._ctx)
            for call, res in zip(calls, results):
                ep.tool_calls += 1
                ep.calls_by_tool[call.name] = ep.calls_by_tool.get(call.name, 0) + 1
                ep.tool_errors += int(res.error)
                obs.append(self._tool_message(call.name, res))
        elif not errors and self.answer_without_tool:
            ep.answer = extract_answer(parsed.text)
            return await self._finish(ep, "answer", obs)
        if errors:
            obs.append({"role": "user", "content": "Your last message could not be used:\n- " + "\n- ".join(errors)})
        if not obs:
            obs.append({"role": "user", "content": "No tool call was found. Call a tool, or call `answer` with your final answer."})
        ep.messages.extend(obs)

        if ep.turns >= self.max_turns:
            return await self._finish(ep, "max_turns", obs, truncated=True)
        if self.max_episode_tokens is not None and ep.tokens >= self.max_episode_tokens:
            return await self._finish(ep, "token_budget", obs, truncated=True)
        return obs, 0.0, False, False, self._info(ep)

    def _coerce_action(self, action: Any) -> tuple[str, str | None]:
        if isinstance(action, Mapping):  # an OpenAI-style assistant message
            content = action.get("content") or ""
            if action.get("tool_calls"):
                return json.dumps({"content": content, "tool_calls": action["tool_calls"]}), None
            action = content
        if not isinstance(action, str):
            return repr(action)[:2000], f"The action must be text; got {type(action).__name__}."
        limit = self.action_space.max_length
        if len(action) > limit:
            return action[:limit], f"Your message was {len(action)} characters; the limit is {limit}. It was cut."
        return action, None

    def _tool_message(self, name: str, res: ToolResult) -> dict:
        content: Any = res.text
        if res.images:
            content = [{"type": "text", "text": res.text}, *({"type": "image", "image": im} for im in res.images)]
        return {"role": "tool", "name": name, "content": content}

    async def _finish(self, ep: Episode, reason: str, obs: list[dict], truncated: bool = False):
        ep.done, ep.end_reason = True, reason
        terms: dict[str, float] = {}
        reward = 0.0
        if reason == "answer" or truncated:
            try:
                out = self.reward_fn(ep.task, ep)
                if asyncio.iscoroutine(out) or isinstance(out, Awaitable):
                    out = await out
                if isinstance(out, Mapping):
                    terms = {k: float(v) for k, v in out.items()}
                    reward = terms.get("total", sum(terms.values()))
                else:
                    reward = float(out)
            except Exception as e:  # a reward bug is reported, and scores 0, not a crash
                log.exception("%s: reward function failed", self.name)
                terms = {"reward_error": 1.0}
                reward = 0.0
                obs = [*obs, {"role": "user", "content": f"[reward error: {type(e).__name__}: {e}]"}]
        await self._end_episode()
        return obs, reward, not truncated, truncated, self._info(ep, reward_terms=terms)

    def _info(self, ep: Episode, **extra: Any) -> dict:
        return {"task_id": ep.task.get("id"), "episode_id": ep.episode_id, "turn": ep.turns,
                "tool_calls": ep.tool_calls, "tool_errors": ep.tool_errors, "parse_errors": ep.parse_errors,
                "calls_by_tool": dict(ep.calls_by_tool), "answer": ep.answer, "end_reason": ep.end_reason,
                "tokens": ep.tokens if self.token_counter else None, **extra}

    async def _end_episode(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            try:
                await self.tools.teardown(ctx)
            except Exception:  # teardown must not mask the episode's result
                log.exception("%s: tool teardown failed", self.name)
            await release_episode_sandbox(ctx)

    async def aclose(self) -> None:
        await self._end_episode()

    # ---- sync API (wraps the async one on a private loop) -----------------------------

    def _run(self, coro):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError(f"{self.name}: inside a running event loop use `await env.areset()` / "
                               "`await env.astep()` instead of reset()/step()")
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self._run(self.areset(seed=seed, options=options))

    def step(self, action: Any):
        return self._run(self.astep(action))

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.episode is None:
            return None
        out = []
        for m in self.episode.messages:
            who = m["role"] + (f":{m['name']}" if m.get("name") else "")
            body = m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])[:2000]
            out.append(f"[{who}] {body}")
        return "\n".join(out)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            from sandboxes.pool import close_shared_pools

            self._loop.run_until_complete(self._end_episode())
            self._loop.run_until_complete(close_shared_pools())  # the loop is ours alone
            self._loop.close()
        self._loop = None
        super().close()

    def __del__(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is None or loop.is_closed() or loop.is_running():
            return
        try:
            self.close()
        except Exception:  # interpreter shutdown: the sandboxes die with this process anyway
            pass
