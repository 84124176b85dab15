"""Scripted experts: model-free agents that solve tasks of the built-in envs with their tools.

They show what a good episode looks like, test the envs end to end, and give demonstrations
for a supervised warm start. Each expert is ``turn(task, history) -> str``, where ``history``
is the list of observations (lists of messages) the env has returned so far.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Expert = Callable[[Mapping[str, Any], Sequence[list[dict]]], str]


def tool_call(name: str, **arguments: Any) -> str:
    """One Qwen/Hermes-format tool call."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def _last_tool_text(history: Sequence[list[dict]]) -> str:
    for obs in reversed(history):
        for m in reversed(obs):
            if m.get("role") == "tool" and isinstance(m.get("content"), str):
                return m["content"]
    return ""


def math_expert(task: Mapping[str, Any], history: Sequence[list[dict]]) -> str:
    """Writes a program that computes the answer, reads its output, answers with it."""
    from tasks.math_solutions import expert_answer_turn, expert_code_turn

    if not history[1:]:
        return expert_code_turn(dict(task))
    return expert_answer_turn(_last_tool_text(history))


@functools.lru_cache(maxsize=1)
def _titles() -> dict[str, str]:
    import tasks

    return {d["id"]: d["title"] for d in tasks.load_corpus("searchqa")}


def search_expert(task: Mapping[str, Any], history: Sequence[list[dict]]) -> str:
    """Searches for each supporting document in hop order, then answers."""
    docs = list(task.get("metadata", {}).get("supporting_docs", []))
    step = len(history) - 1  # history[0] is the opening
    if step < len(docs):
        return f"I need the article on {_titles()[docs[step]]}.\n" + tool_call("search", query=_titles()[docs[step]])
    return tool_call("answer", answer=str(task["answer"]))


def sql_expert(task: Mapping[str, Any], history: Sequence[list[dict]]) -> str:
    """Runs the gold query to check its result, then submits it."""
    gold = task.get("metadata", {}).get("gold_sql") or task["answer"]
    if len(history) == 1:
        return "Let me run the query.\n" + tool_call("sql", query=gold)
    return tool_call("answer", answer=gold)


def wrong_expert(task: Mapping[str, Any], history: Sequence[list[dict]]) -> str:
    """Answers at once with something that is never right."""
    return tool_call("answer", answer="SELECT 'definitely wrong' WHERE 0" if "db_id" in task else "definitely wrong 0.123")


EXPERTS: dict[str, Expert] = {
    "agent_rl/Math-v0": math_expert,
    "agent_rl/SearchQA-v0": search_expert,
    "agent_rl/SQL-v0": sql_expert,
}


def get_expert(env_id: str) -> Expert:
    try:
        return EXPERTS[env_id]
    except KeyError:
        raise KeyError(f"no scripted expert for {env_id!r}; experts exist for: {', '.join(EXPERTS)}") from None


async def run_episode(env, expert: Expert, *, seed: int | None = None, options: dict | None = None,
                      max_steps: int = 32) -> dict:
    """Play one episode of ``env`` (a ToolEnv, async API) with ``expert``; return its record."""
    obs, info = await env.areset(seed=seed, options=options)
    task = env.episode.task
    history = [obs]
    reward, terminated, truncated = 0.0, False, False
    for _ in range(max_steps):
        action = expert(task, history)
        obs, reward, terminated, truncated, info = await env.astep(action)
        history.append(obs)
        if terminated or truncated:
            break
    return {"task_id": task.get("id"), "reward": reward, "terminated": terminated, "truncated": truncated,
            "info": info, "messages": list(env.episode.messages)}
