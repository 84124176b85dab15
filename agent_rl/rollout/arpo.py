"""ARPO: entropy-adaptive branching rollouts (Agentic Reinforced Policy Optimization).

Per task, with a budget of ``M`` trajectories:
1. sample ``N`` full trajectories;
2. each one's baseline entropy ``H0`` is the mean entropy of the first ``k`` tokens of its own
   first turn (never a value from another episode or batch);
3. after every tool result, the next turn's first ``k`` tokens give ``H``; the normalised rise
   ``dH = (H - H0) / H0`` (0 when ``H0`` is 0) sets the branch probability
   ``P = clip(alpha + beta * dH, 0, 1)``;
4. on a branch, ``Z`` partial rollouts start from the point right after the tool result (the
   policy sequence is forked there, sharing the prefix; the env is rebuilt by replaying the
   turns so far), while the budget lasts;
5. unused budget is filled with full trajectories.

To branch *before* a turn whose entropy is only known *after* it, the sequence is forked at
every post-tool turn start while budget remains (a cheap fork), and the fork is dropped when
no branch is taken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from agent_rl.policy.base import Generation, SeqId

from .engine import RolloutEngine
from .trajectory import Trajectory


@dataclasses.dataclass(frozen=True)
class ArpoConfig:
    budget: int = 16  # M
    initial: int = 8  # N
    alpha: float = 0.5
    beta: float = 0.2
    k: int = 20
    branches: int = 2  # Z
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.initial <= self.budget:
            raise ValueError(f"need 1 <= initial (N={self.initial}) <= budget (M={self.budget})")
        if self.branches < 1 or self.k < 1:
            raise ValueError("branches (Z) and k must be at least 1")


def branch_probability(h: float, h0: float, alpha: float, beta: float) -> float:
    """P = clip(alpha + beta * (h - h0) / h0, 0, 1); the rise is 0 when h0 is 0."""
    rise = (h - h0) / h0 if h0 > 0 else 0.0
    return min(1.0, max(0.0, alpha + beta * rise))


def _mean_first(xs: Sequence[float], k: int) -> float:
    head = list(xs[:k])
    return sum(head) / len(head) if head else 0.0


class ArpoRolloutEngine(RolloutEngine):
    def __init__(self, *args: Any, arpo: ArpoConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arpo = arpo or ArpoConfig()
        self._rng = random.Random(self.arpo.seed)
        self._budget: dict[int, int] = {}  # group -> trajectories still allowed
        self._all: list[Trajectory] = []
        self._pending: list[asyncio.Task] = []
        self._tasks: dict[int, dict] = {}
        self.branch_log: list[dict] = []

    # ---- the run --------------------------------------------------------------------------

    async def run(self, tasks: Sequence[dict], n_per_task: int | None = None, *, first_group: int = 0) -> list[Trajectory]:
        a = self.arpo
        self._all, self._pending = [], []
        for g, task in enumerate(tasks, start=first_group):
            self._tasks[g] = task
            self._budget[g] = a.budget - a.initial
        await asyncio.gather(*(self._root(g, t) for g, t in self._tasks.items() for _ in range(a.initial)))
        while self._pending:  # branches spawn branches
            batch, self._pending = self._pending, []
            await asyncio.gather(*batch)
        # Fill what branching left unused with full trajectories.
        fill = [(g, self._tasks[g]) for g, left in self._budget.items() for _ in range(left)]
        for g, _ in fill:
            self._budget[g] = 0
        await asyncio.gather(*(self._root(g, t) for g, t in fill))
        assign_segments(self._all)
        return list(self._all)

    def _register(self, traj: Trajectory) -> None:
        traj.uid = len(self._all)
        self._all.append(traj)

    async def _root(self, group: int, task: dict) -> None:
        env = self.env_factory()
        try:
            obs, _ = await env.areset(options={"task": task})
            r = self.renderer(env)
            traj = Trajectory(task_id=task.get("id"), group_id=group, prompt_ids=r.opening(obs), messages=list(obs))
            self._register(traj)
            seq = self.policy.new_sequence(traj.prompt_ids)
            try:
                await self._turns(env, r, traj, seq)
            finally:
                self.policy.release(seq)
        finally:
            await env.aclose()

    async def _branch(self, parent: Trajectory, seq: SeqId, at: int, turn: int) -> None:
        """Continue a copy of ``parent`` cut at ``ids[:at]`` (the start of ``turn``) on ``seq``."""
        env = self.env_factory()
        try:
            task = self._tasks[parent.group_id]
            await env.areset(options={"task": task})
            for m in [m for m in parent.messages if m["role"] == "assistant"][:turn]:
                await env.astep(m["content"])  # rebuild the env's state: same actions, same tools
            traj = Trajectory(task_id=parent.task_id, group_id=parent.group_id, prompt_ids=list(parent.prompt_ids),
                              ids=parent.ids[:at], loss_mask=parent.loss_mask[:at], logprobs=parent.logprobs[:at],
                              entropies=parent.entropies[:at], segment_ids=parent.segment_ids[:at],
                              turn_spans=[s for s in parent.turn_spans if s[1] <= at],
                              turn_rewards=parent.turn_rewards[:turn],
                              messages=_messages_before_turn(parent.messages, turn),
                              entropy_baseline=parent.entropy_baseline, branch_parent=parent.uid, branched_at=at)
            self._register(traj)
            try:
                await self._turns(env, self.renderer(env), traj, seq, start_turn=turn)
            finally:
                self.policy.release(seq)
        finally:
            await env.aclose()

    # ---- the hooks ------------------------------------------------------------------------

    def _before_turn(self, traj: Trajectory, seq: SeqId, turn: int) -> Any:
        if turn == 0 or self._budget.get(traj.group_id, 0) <= 0:
            return None
        return (self.policy.fork(seq, 1)[0], len(traj.ids))  # the point right after the tool result

    def _after_turn(self, traj: Trajectory, seq: SeqId, turn: int, gen: Generation, mark: Any) -> None:
        a = self.arpo
        h = _mean_first(gen.entropies, a.k)
        if turn == 0 and traj.entropy_baseline is None:
            traj.entropy_baseline = h
        if mark is None:
            return
        fork, at = mark
        p = branch_probability(h, traj.entropy_baseline or 0.0, a.alpha, a.beta)
        draw = self._rng.random()
        made = 0
        if draw < p:
            for _ in range(a.branches):
                if self._budget[traj.group_id] <= 0:
                    break
                self._budget[traj.group_id] -= 1
                child = self.policy.fork(fork, 1)[0]
                self._pending.append(asyncio.ensure_future(self._branch(traj, child, at, turn)))
                made += 1
        self.policy.release(fork)
        self.branch_log.append({"uid": traj.uid, "turn": turn, "entropy": h, "baseline": traj.entropy_baseline,
                                "p": p, "branches": made})


def _messages_before_turn(messages: list[dict], turn: int) -> list[dict]:
    """The messages up to (not including) the ``turn``-th assistant message."""
    out, seen = [], 0
    for m in messages:
        if m["role"] == "assistant":
            if seen == turn:
                break
            seen += 1
        out.append(m)
    return out


def assign_segments(trajs: Sequence[Trajectory]) -> None:
    """Fill ``segment_ids``: tokens shared by several trajectories of the tree get the id of the
    region they lie in (the same id in every trajectory that holds them); the rest -1.

    Position i of a branch lies in its parent's tokens when ``i < branched_at``; following that
    up gives each token its owner ``(uid, i)``, and the trajectories that hold the same owner
    share it.
    """
    by_uid = {t.uid: t for t in trajs}

    def owner(t: Trajectory, i: int) -> tuple[int, int]:
        while t.branch_parent is not None and t.branched_at is not None and i < t.branched_at:
            t = by_uid[t.branch_parent]
        return t.uid, i

    holders: dict[tuple[int, int], list[int]] = {}
    owners: dict[int, list[tuple[int, int]]] = {}
    for t in trajs:
        keys = [owner(t, i) for i in range(len(t.ids))]
        owners[t.uid] = keys
        for key in keys:
            holders.setdefault(key, []).append(t.uid)
    region_ids: dict[tuple[int, frozenset], int] = {}
    for t in trajs:
        seg = []
        for key in owners[t.uid]:
            rows = holders[key]
            if len(rows) < 2:
                seg.append(-1)
            else:
                seg.append(region_ids.setdefault((key[0], frozenset(rows)), len(region_ids)))
        t.segment_ids = seg
