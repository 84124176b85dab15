"""Many multi-turn episodes at once: policy turns batched across episodes, env steps concurrent.

Each episode is a coroutine: reset its env, then alternate a policy turn (a request to the
batcher, which generates for every episode waiting at that moment in one ``policy.generate``)
and an env step. While the model computes, other episodes' tools run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from agent_rl.policy.base import Generation, Policy, SamplingParams, SeqId

from .render import ChatRenderer
from .trajectory import Trajectory

log = logging.getLogger(__name__)

CONTEXT_NOTE = "Context limit reached: give your final answer now with the answer tool."


class Batcher:
    """Collects generation requests from many episodes and serves them in batched calls."""

    def __init__(self, policy: Policy, max_batch: int = 64) -> None:
        self.policy = policy
        self.max_batch = max_batch
        self._queue: list[tuple[SeqId, SamplingParams, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.batch_sizes: list[int] = []

    async def generate(self, seq: SeqId, params: SamplingParams) -> Generation:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((seq, params, fut))
        self._wake.set()
        return await fut

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Let every episode that is about to ask do so, then serve them together.
            for _ in range(3):
                await asyncio.sleep(0)
            while self._queue:
                params = self._queue[0][1]
                batch = [q for q in self._queue if q[1] == params][: self.max_batch]
                for q in batch:
                    self._queue.remove(q)
                self.batch_sizes.append(len(batch))
                try:
                    gens = await self.policy.generate([q[0] for q in batch], params)
                except Exception as e:  # every waiting episode hears of it
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, _, fut), g in zip(batch, gens):
                    if not fut.done():
                        fut.set_result(g)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


@dataclasses.dataclass
class RolloutConfig:
    sampling: SamplingParams = dataclasses.field(default_factory=SamplingParams)
    max_turns: int = 6
    max_turn_tokens: int = 256
    max_context_tokens: int = 2048
    concurrency: int = 32


class RolloutEngine:
    """``env_factory()`` returns a fresh ToolEnv (async API); one is made per running episode."""

    def __init__(self, policy: Policy, env_factory: Callable[[], Any], config: RolloutConfig | None = None) -> None:
        self.policy = policy
        self.env_factory = env_factory
        self.cfg = config or RolloutConfig()
        self.batcher = Batcher(policy)
        self._renderer: ChatRenderer | None = None
        stop = set(self.cfg.sampling.stop_token_ids)
        eos = getattr(policy.tokenizer, "eos_token_id", None)
        if eos is not None:
            stop.add(eos)
        self.stop_ids = tuple(sorted(stop))

    def renderer(self, env: Any) -> ChatRenderer:
        if self._renderer is None:
            self._renderer = ChatRenderer(self.policy.tokenizer, env.tool_schemas())
        return self._renderer

    def _params(self, max_new: int) -> SamplingParams:
        return dataclasses.replace(self.cfg.sampling, max_new_tokens=max(1, max_new), stop_token_ids=self.stop_ids)

    async def run(self, tasks: Sequence[dict], n_per_task: int = 1, *, first_group: int = 0) -> list[Trajectory]:
        """``n_per_task`` episodes of every task; trajectories of one task share a group id."""
        sem = asyncio.Semaphore(self.cfg.concurrency)
        jobs = [(first_group + g, task) for g, task in enumerate(tasks) for _ in range(n_per_task)]

        async def one(group: int, task: dict) -> Trajectory:
            async with sem:
                return await self.episode(task, group)

        return list(await asyncio.gather(*(one(g, t) for g, t in jobs)))

    async def episode(self, task: dict, group_id: int) -> Trajectory:
        env = self.env_factory()
        try:
            return await self._episode(env, task, group_id)
        finally:
            await env.aclose()

    async def _episode(self, env: Any, task: dict, group_id: int) -> Trajectory:
        obs, info = await env.areset(options={"task": task})
        r = self.renderer(env)
        traj = Trajectory(task_id=task.get("id"), group_id=group_id, prompt_ids=r.opening(obs))
        traj.messages = list(obs)
        seq = self.policy.new_sequence(traj.prompt_ids)
        try:
            await self._turns(env, r, traj, seq)
        finally:
            self.policy.release(seq)
        traj.check()
        return traj

    # Hooks for branching rollouts (ARPO): called around every policy turn.
    def _before_turn(self, traj: Trajectory, seq: SeqId, turn: int) -> Any:
        return None

    def _after_turn(self, traj: Trajectory, seq: SeqId, turn: int, gen: Generation, mark: Any) -> None:
        pass

    async def _turns(self, env: Any, r: ChatRenderer, traj: Trajectory, seq: SeqId, start_turn: int = 0) -> None:
        cfg = self.cfg
        last_chance = False
        cut = "max_turns"
        for turn in range(start_turn, cfg.max_turns):
            used = len(traj.prompt_ids) + len(traj.ids)
            budget = min(cfg.max_turn_tokens, cfg.max_context_tokens - used)
            mark = self._before_turn(traj, seq, turn)
            gen = await self.batcher.generate(seq, self._params(budget))
            traj.add_policy_tokens(gen.ids, gen.logprobs, gen.entropies)
            self._after_turn(traj, seq, turn, gen, mark)
            text = r.decode_turn(gen.ids)
            traj.messages.append({"role": "assistant", "content": text})
            obs, reward, terminated, truncated, info = await env.astep(text)
            traj.turn_rewards.append(float(reward))
            traj.info = info
            if terminated or truncated:
                traj.reward = float(reward)
                traj.finish = info.get("end_reason") or ("answer" if terminated else "truncated")
                traj.truncated = bool(truncated)
                return
            if last_chance:
                cut = "context"
                break
            raw = r.decode_raw(gen.ids)
            _, obs_ids = r.observation(raw, obs)
            noted = [*obs, {"role": "user", "content": CONTEXT_NOTE}]
            _, noted_ids = r.observation(raw, noted)
            used = len(traj.prompt_ids) + len(traj.ids)
            # Carry on only while a full next turn still leaves room to tell the agent to answer
            # and for that answer; else tell it now.
            if cfg.max_context_tokens - used - len(noted_ids) < 2 * cfg.max_turn_tokens:
                obs, obs_ids = noted, noted_ids
                if cfg.max_context_tokens - used - len(obs_ids) < 8:
                    cut = "context"
                    break  # not even room to answer: cut off
                last_chance = True
            self.policy.append(seq, obs_ids)
            traj.add_env_tokens(obs_ids)
            traj.messages.extend(obs)
        # Cut off (turn limit here, or context): the env's own truncation did not fire.
        traj.truncated = True
        traj.finish = cut
        traj.reward = 0.0

    async def aclose(self) -> None:
        await self.batcher.aclose()
